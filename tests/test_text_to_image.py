"""Text-to-image diffusion: tokenizer, captions, cross-attention masking, guidance, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import contract
from jaxgen.core.config import ConfigError, load
from jaxgen.data import captions, sources
from jaxgen.data.pipeline import TrainStream, eval_batches
from jaxgen.diffusion import samplers
from jaxgen.families import build
from jaxgen.models.transformer import SpatialTransformer, TextEncoder
from jaxgen.text.tokenizer import PAD_ID, START_ID, UNK_ID, Tokenizer, TokenizerError, normalise
from tests.helpers import assert_resumes_exactly_on_any_device_count, run_cli

TINY = ["--config=experiments/text_digits.py", "--config.model.channels=16",
        "--config.model.text_width=16", "--config.model.text_depth=1",
        "--config.model.channel_mults=(1,)", "--config.model.transformer_resolutions=(8,)",
        "--config.model.num_timesteps=100", "--config.sample.steps=5",
        "--config.train.batch_size=32", "--config.train.log_every_steps=10",
        "--config.eval.every_steps=1000", "--config.eval.vlb_timesteps=10",
        "--config.eval.num_samples=0", "--config.sample.every_steps=1000",
        "--config.checkpoint.every_steps=10"]


@pytest.fixture(scope="module")
def digits():
    """The captioned digits splits of text_digits.py ("bright 3" and "small 7" held out)."""
    config = load("experiments/text_digits.py")
    return config, sources.from_config(config.data)


def tiny_family(config, splits, **model):
    config = config.copy_and_resolve_references()
    config.model.channels, config.model.text_width, config.model.text_depth = 16, 16, 1
    config.model.num_timesteps, config.sample.steps = 100, 5
    for key, value in model.items():
        config.model[key] = value
    return build(config, sources.DataSpec.of(splits["train"]))


def random_params(shapes, scale=0.1, seed=0):
    """Random values of these shapes: non-trivial weights everywhere (the output layers start
    at zero), without compiling an initialiser."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), s.dtype), shapes)


def test_the_tokenizer_round_trips_and_maps_unknown_words_to_the_unknown_token():
    tokenizer = Tokenizer.build(["a dark ankle boot", "ankle boot, small, dark"], 8)
    for text in ("a dark ankle boot", "Ankle boot,  SMALL, dark", ""):
        ids = tokenizer.encode(text)
        assert ids[0] == START_ID and ids.shape == (8,) and ids.dtype == np.int32
        assert tokenizer.decode(ids) == normalise(text)
    ids = tokenizer.encode("a shiny ankle boot")
    assert list(ids[:5]) == [START_ID, tokenizer.encode("a")[1], UNK_ID,
                             *tokenizer.encode("ankle boot")[1:3]]
    assert list(ids[5:]) == [PAD_ID] * 3
    assert tokenizer.unknown_words("a shiny ankle boot") == ["shiny"]
    assert Tokenizer.from_json(tokenizer.to_json()).vocabulary == tokenizer.vocabulary
    with pytest.raises(TokenizerError, match="at most 7"):
        tokenizer.encode("a a a a a a a a")


def test_captions_are_deterministic_balanced_and_never_name_a_held_out_pair(digits):
    config, splits = digits
    again = sources.from_config(config.data)
    np.testing.assert_array_equal(splits["train"].tokens, again["train"].tokens)
    tokenizer = captions.tokenizer_of(splits["train"])
    texts = {name: {tokenizer.decode(row) for row in split.tokens.reshape(
        -1, split.tokens.shape[-1])} for name, split in splits.items()}
    assert "a dark 3" in texts["train"] and "a large 7" in texts["train"]
    for pair in ("bright 3", "small 7"):
        value, name = pair.split()
        named = [t for t in texts["train"] if value in t.split() and name in t.split()]
        assert not named, named
        # The test split's captions say what the images show, pairs held out or not.
        assert any(value in t.split() and name in t.split() for t in texts["test"])
    captioner = captions.Captioner.fit(splits["train"])
    train = splits["train"]
    measured = captioner.measure(train.images, train.labels, train.max_value)
    # Each value holds for about half of a class, so an attribute is no proxy for the class
    # (8x8 sizes are multiples of 1/64: ties at the median go to "small").
    for k in range(10):
        np.testing.assert_allclose(measured[train.labels == k].mean(axis=0), 0.5, atol=0.12)
    with pytest.raises(captions.CaptionError, match="'shiny 3'"):
        captions.Captioner.fit(train, ["shiny 3"])


def test_batches_carry_one_caption_per_image_chosen_by_seed_and_step(digits):
    _, splits = digits
    train = splits["train"]
    stream = TrainStream(train, 64, seed=0, rows=slice(0, 64))
    first, again, later = stream.batch_at(3), stream.batch_at(3), stream.batch_at(4)
    np.testing.assert_array_equal(first["tokens"], again["tokens"])
    assert first["tokens"].shape == (64, train.tokens.shape[-1])
    index = stream._permutation(0)[3 * 64:4 * 64]
    assert all(any(np.array_equal(row, c) for c in train.tokens[i])
               for row, i in zip(first["tokens"], index))
    assert not np.array_equal(first["tokens"], later["tokens"])
    half = TrainStream(train, 64, seed=0, rows=slice(32, 64)).batch_at(3)
    np.testing.assert_array_equal(half["tokens"], first["tokens"][32:])
    batch = next(eval_batches(splits["test"], 100, slice(0, 128), pad_to=128))
    assert batch["tokens"].shape == (128, train.tokens.shape[-1])


def test_cross_attention_ignores_padded_tokens():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 8)), jnp.float32)
    context = jnp.asarray(rng.normal(size=(2, 5, 6)), jnp.float32)
    mask = jnp.asarray([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], bool)
    block = SpatialTransformer(heads=2, num_groups=4)
    params = random_params(jax.eval_shape(block.init, jax.random.key(0), x, context, mask))
    apply = jax.jit(block.apply)
    out = apply(params, x, context, mask)
    changed = jnp.where(mask[..., None], context, 100.0 * context + 3.0)
    np.testing.assert_array_equal(out, apply(params, x, changed, mask))
    assert not np.allclose(out, apply(params, x, changed, jnp.ones_like(mask)))

    # Through the text encoder: a padded position's embedding (the pad row) changes nothing.
    encoder = TextEncoder(vocab_size=10, max_tokens=6, width=8, depth=2, heads=2)
    tokens = jnp.asarray([[2, 5, 7, 0, 0, 0], [2, 4, 0, 0, 0, 0]], jnp.int32)
    variables = random_params(jax.eval_shape(encoder.init, jax.random.key(2), tokens), 1.0)
    embedded, token_mask = jax.jit(encoder.apply)(variables, tokens)
    table = variables["params"]["token_embedding"]["embedding"]
    moved = jax.tree.map(lambda a: a, variables)
    moved["params"]["token_embedding"]["embedding"] = table.at[PAD_ID].set(50.0)
    embedded_moved, _ = jax.jit(encoder.apply)(moved, tokens)
    np.testing.assert_allclose(np.asarray(embedded)[np.asarray(token_mask)],
                               np.asarray(embedded_moved)[np.asarray(token_mask)], atol=1e-6)


def test_guidance_at_w_0_is_the_conditional_model(digits):
    config, splits = digits
    family = tiny_family(config, splits)
    batch = contract.example_batch((8, 8, 1), 4, family.data.max_tokens)
    params = random_params(jax.eval_shape(family.init, jax.random.key(0), batch).params)
    tokens = jnp.asarray(splits["test"].tokens[:4, 1])
    condition = family.prompt_condition(tokens)
    x_t = jax.random.normal(jax.random.key(2), (4, 8, 8, 1))
    index = jnp.full((4,), 60, jnp.int32)
    model = lambda x, i, c: family.apply(params, x, i, c)  # noqa: E731
    conditional = jax.jit(samplers.unguided(family.process,
                                            lambda x, i: model(x, i, condition)))
    guided = jax.jit(samplers.classifier_free(family.process, model, condition,
                                              family.null_condition(condition), 0.0))
    np.testing.assert_allclose(guided(x_t, index)[0], conditional(x_t, index)[0], atol=1e-5)
    # ... and the null condition is the empty prompt, which the prompt changes away from.
    np.testing.assert_array_equal(family.null_condition(condition)["tokens"],
                                  family.empty_prompt(tokens))
    strong = jax.jit(samplers.classifier_free(family.process, model, condition,
                                              family.null_condition(condition), 3.0))
    assert not np.allclose(strong(x_t, index)[0], conditional(x_t, index)[0], atol=1e-3)


def test_a_text_family_needs_captions_and_names_the_key():
    config = load("experiments/text_digits.py")
    config.data.captions = ""
    splits = sources.from_config(config.data)
    with pytest.raises(ConfigError, match="data.captions"):
        build(config, sources.DataSpec.of(splits["train"]))


@pytest.mark.slow
def test_sigkill_restart_and_eight_devices_end_at_the_uninterrupted_parameters(tmp_path):
    assert_resumes_exactly_on_any_device_count(
        str(tmp_path), [*TINY, "--config.checkpoint.every_steps=5"], steps=10, kill_after=5,
        keys=("loss", "grad_norm"))


@pytest.mark.slow
def test_a_prompt_differing_in_one_attribute_changes_that_attribute_of_the_samples(tmp_path):
    """text_digits.py's model trained for a minute (400 steps of 64; EMA 0.99): samples of
    "a dark D" are measured dark more often than those of "a bright D" by a wide margin, and
    likewise small against large (measured at 400 steps: gaps 0.61 and 0.52)."""
    import jaxgen

    workdir = str(tmp_path)
    result = run_cli("train", ["--config=experiments/text_digits.py", f"--workdir={workdir}",
                               "--config.model.text_depth=1", "--config.train.num_steps=400",
                               "--config.train.batch_size=64", "--config.train.ema_decay=0.99",
                               "--config.sample.steps=20", "--config.eval.every_steps=0",
                               "--config.sample.every_steps=0",
                               "--config.checkpoint.every_steps=400"], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    model = jaxgen.load(workdir)
    train = model.splits["train"]
    captioner = captions.Captioner.fit(train)
    gaps = {}
    for a, (attribute, (low, high)) in enumerate(captions.ATTRIBUTES.items()):
        share = {}
        for word in (low, high):
            measured = [captioner.measure(model.sample(32, prompt=f"a {word} {digit}", seed=digit,
                                                       guidance_scale=3.0),
                                          np.full(32, digit))[:, a] for digit in (0, 2, 6)]
            share[word] = float(np.mean(measured))  # the share measured high (bright, large)
        gaps[attribute] = share[high] - share[low]
    assert min(gaps.values()) > 0.3, gaps
