"""jaxgen from Python: the calls the command-line tools are made of.

    import jaxgen

    config = jaxgen.load_config("experiments/vae_digits.py", {"train.num_steps": 500})
    model = jaxgen.train(config, "runs/vae")      # trains, or resumes the run in the workdir
    model = jaxgen.load("runs/vae")               # the newest checkpoint of a run
    images = model.sample(16)                     # [16, H, W, C] in [0, 1], numpy
    metrics = model.evaluate(num_samples=2000)    # what python -m jaxgen.evaluate reports
    codes = model.encode(images)                  # families with a latent space
    decoded = model.decode(codes)

A conditional model takes labels (`model.sample(10, labels=range(10))`), a text-to-image model
a prompt (`model.sample(16, prompt="a dark sneaker", guidance_scale=4)`), a diffusion model
its sampler settings as sample.* keys (`model.sample(16, guidance_scale=2.0, steps=100)`).
Everything a run writes goes to its workdir, as with the command-line tools.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen import families
from jaxgen.core import config as config_lib, parallel, runtime
from jaxgen.core.contract import LatentModel, PromptModel
from jaxgen.data import captions
from jaxgen.data.ranges import to_model_range, to_unit_range
from jaxgen.engine import evaluation, restore, runs
from jaxgen.pictures import latent
from jaxgen.training import trainer as trainer_lib, workdir as workdir_lib


def load_config(spec: str, overrides: Mapping[str, Any] | Sequence[str] = ()
                ) -> ml_collections.ConfigDict:
    """experiments/NAME.py[:ARG] with overrides, {"train.num_steps": 500} or
    ["train.num_steps=500"], checked as on the command line (ConfigError names a bad key)."""
    return config_lib.load(spec, _as_list(overrides))


def train(config: ml_collections.ConfigDict, workdir: str, *,
          config_from_workdir: bool = False) -> Model:
    """Trains the run of `config` in workdir to config.train.num_steps, resuming from its
    newest checkpoint, exactly as python -m jaxgen.train does; returns the trained Model.
    config_from_workdir: config was read from a workdir, whose family must be registered
    (`families.build`)."""
    runtime.configure(config.train.deterministic)  # a no-op warning once the backend is up
    workdir_lib.check_usable(workdir, write=False)
    splits, family = runs.prepare_config(config, config_from_workdir)
    workdir_lib.check_usable(workdir, write=True)
    with workdir_lib.lock(workdir):
        if workdir_lib.has_config(workdir):
            # The saved config with the keys declared since (at the values they imply).
            saved = families.complete(workdir_lib.read_config(workdir))
            config_lib.check_resumable(json.loads(saved.to_json()), config, workdir)
        if parallel.is_primary():
            if splits["train"].tokens is not None:
                workdir_lib.write_tokenizer(workdir, captions.tokenizer_of(splits["train"]))
            workdir_lib.check_frozen_inputs(workdir, restore.frozen_files(family),
                                            write=True)
            workdir_lib.write_config(workdir, config)
            workdir_lib.append_run_record(workdir)
        state = trainer_lib.train(config, workdir, family, splits,
                                  runs.eval_hooks(config, family))
    return Model(workdir, config, splits, family, state)


def load(workdir: str, overrides: Mapping[str, Any] | Sequence[str] = ()) -> Model:
    """The newest checkpoint of the run in workdir, with its saved config (plus overrides of
    keys that do not change the weights: sample.*, eval.*)."""
    config = families.complete(workdir_lib.read_config(workdir))
    if overrides:
        config = _overridden(config, overrides)
    run = restore.load(workdir, config=config)
    return Model(workdir, run.config, run.splits, run.family, run.state)


def _as_list(overrides: Mapping[str, Any] | Sequence[str]) -> list[str]:
    """{"train.num_steps": 500} or ["train.num_steps=500"] -> ["train.num_steps=500"]."""
    if isinstance(overrides, Mapping):
        return [f"{key}={value}" for key, value in overrides.items()]
    return list(overrides)


def _overridden(config: ml_collections.ConfigDict, overrides: Mapping[str, Any] | Sequence[str]
          ) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(config.to_dict())
    for override in _as_list(overrides):
        key, _, text = override.partition("=")
        config_lib.set_value(config, key, text)
    return config


class Model:
    """A trained run: its config, data, family and newest train state."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, splits: dict,
                 family: Any, state: Any):
        self.workdir, self.config, self.splits = workdir, config, splits
        self.family, self.state = family, state
        self.trainer = trainer_lib.Trainer(config, family, splits)
        # (settings, num) -> (model under those settings, its compiled batch sampler): repeated
        # calls (one per prompt, per seed) compile once.
        self._samplers: dict[tuple, tuple[Model, Any]] = {}

    def _with(self, overrides: Mapping[str, Any]) -> Model:
        """This model under a config with overrides of keys that leave the weights alone
        (sample.*: a guidance scale, a sampler; eval.*)."""
        if not overrides:
            return self
        config = _overridden(self.config, overrides)
        _, family = runs.prepare_config(config)
        return Model(self.workdir, config, self.splits, family, self.state)

    def sample(self, num: int, labels: Sequence[int] | None = None, seed: int = 0,
               prompt: str | None = None, **settings) -> np.ndarray:
        """num samples [num, H, W, C] in [0, 1]. labels: the class of each sample (a
        conditional model; default 0, 1, ..., K-1, 0, ...). prompt: a text-to-image model's
        prompt, e.g. "a dark sneaker" (the run's tokenizer). seed: which draw (0, 1, ...: the
        same images for the same seed). settings: sample.* keys, e.g. guidance_scale=2.0."""
        cache_key = (tuple(sorted(settings.items())), num)
        if cache_key not in self._samplers:
            model = self._with({f"sample.{k}": v for k, v in settings.items()})
            self._samplers[cache_key] = (model, model.trainer.batch_sampler(model.state, num))
        model, sampler = self._samplers[cache_key]
        mesh = parallel.make_mesh()
        padded = parallel.padded(num, mesh)
        rows = parallel.process_rows(padded)
        if prompt is not None:
            if not isinstance(model.family, PromptModel):
                raise config_lib.ConfigError(f"family '{self.config.family}' takes no prompt")
            tokens = workdir_lib.read_tokenizer(self.workdir).encode(prompt)
            condition = model.family.prompt_condition(parallel.to_global(
                {"tokens": np.repeat(tokens[None], padded, axis=0)[rows]}, mesh)["tokens"])
            return np.asarray(parallel.fetch(sampler(seed, condition)))[:num]
        classes = model.family.sampling_classes
        requested = np.zeros(padded, np.int32)
        requested[:num] = (np.arange(num) % max(classes, 1)) if labels is None else labels
        if labels is not None and classes and not np.all((requested >= 0) & (requested < classes)):
            raise config_lib.ConfigError(f"labels must be in 0..{classes - 1}")
        global_labels = parallel.to_global({"label": requested[rows]}, mesh)["label"]
        return np.asarray(parallel.fetch(sampler(seed, global_labels)))[:num]

    def evaluate(self, num_samples: int | None = None, num_examples: int | None = None,
                 output: str | None = None, **settings) -> dict:
        """What python -m jaxgen.evaluate computes, written to the workdir likewise; returns
        the record ("values": the model's metrics, "real": the real-data column, ...)."""
        overrides = {f"sample.{k}": v for k, v in settings.items()}
        if num_samples is not None:
            overrides["eval.num_samples"] = num_samples
        if num_examples is not None:
            overrides["eval.num_examples"] = num_examples
        model = self._with(overrides)
        return evaluation.evaluate(model.config, model.splits, model.family, model.trainer,
                                     model.state, self.workdir, output)

    def _latent_family(self) -> LatentModel:
        if not isinstance(self.family, LatentModel):
            raise config_lib.ConfigError(f"family '{self.config.family}' has no encoder")
        return self.family

    def encode(self, images: np.ndarray, labels: Sequence[int] | None = None) -> np.ndarray:
        """images [N, H, W, C] in [0, 1] -> codes [N, latent_dim] (a VAE: the posterior
        means)."""
        family = self._latent_family()
        x = to_model_range(np.asarray(images, np.float32), 1, family.value_range)
        codes = latent.encode_mean(family, self.state.params_for_sampling(), jnp.asarray(x),
                                   None if labels is None else jnp.asarray(labels))
        return np.asarray(codes)

    def decode(self, codes: np.ndarray, labels: Sequence[int] | None = None) -> np.ndarray:
        """codes [N, latent_dim] -> images [N, H, W, C] in [0, 1]."""
        family = self._latent_family()
        images = family.decode(self.state.params_for_sampling(), jnp.asarray(codes),
                               None if labels is None else jnp.asarray(labels))
        return np.asarray(jax.device_get(to_unit_range(images, family.value_range)))
