"""diffusers' config.json (UNet2DModel) and scheduler_config.json (DDPMScheduler,
DDIMScheduler) <-> jaxgen's diffusion config keys.

Every key diffusers writes is either mapped or checked to hold a value jaxgen computes the same
way; anything else is refused with a one-line error naming it, so that a model never loads into
a network that computes something else.
"""

from __future__ import annotations

import math
from typing import Any

from jaxgen.core.config import ConfigError
from jaxgen.pretrained.unet_keys import Architecture


class PretrainedError(ConfigError):
    """A pretrained folder jaxgen cannot read as it is (one line, naming the cause)."""


UNET_CLASS = "UNet2DModel"
SCHEDULER_CLASSES = ("DDPMScheduler", "DDIMScheduler")

# UNet2DModel keys whose value must be the one given (the only one jaxgen's UNet computes).
UNET_FIXED = {"center_input_sample": False, "time_embedding_type": "positional",
              "mid_block_scale_factor": 1, "downsample_type": "conv", "upsample_type": "conv",
              "act_fn": "silu", "resnet_time_scale_shift": "default", "class_embed_type": None,
              "mid_block_type": "UNetMidBlock2D"}
UNET_MAPPED = ("sample_size", "in_channels", "out_channels", "block_out_channels",
               "layers_per_block", "down_block_types", "up_block_types", "downsample_padding",
               "dropout", "attention_head_dim", "norm_num_groups", "attn_norm_num_groups",
               "norm_eps", "add_attention", "num_class_embeds", "flip_sin_to_cos",
               "freq_shift", "time_embedding_dim", "num_train_timesteps")
DOWN_BLOCKS = {"DownBlock2D": False, "AttnDownBlock2D": True}
UP_BLOCKS = {"UpBlock2D": False, "AttnUpBlock2D": True}

SCHEDULER_IGNORED = ("dynamic_thresholding_ratio", "sample_max_value")
PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
VARIANCES = {"fixed_small": "small", "fixed_small_log": "small", "fixed_large": "large",
             "fixed_large_log": "large"}
# What DDPMScheduler() assumes: the settings of a UNet folder without a scheduler beside it.
DEFAULT_SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000,
                     "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}


def _is_metadata(key: str) -> bool:
    return key.startswith("_")


def unet_settings(unet: dict, where: str) -> tuple[dict[str, Any], tuple[int, int, int], int]:
    """config.json of a UNet2DModel -> (jaxgen model.* keys, image shape (H, W, C), number
    of class embeddings, 0 for none). `where` names the file in errors."""
    kind = unet.get("_class_name", UNET_CLASS)
    if kind != UNET_CLASS:
        raise PretrainedError(f"{where} describes a {kind}; jaxgen reads {UNET_CLASS} folders")
    for key, value in unet.items():
        if _is_metadata(key) or key in UNET_MAPPED:
            continue
        if key not in UNET_FIXED:
            raise PretrainedError(f"{where}: cannot map the UNet setting '{key}'")
        if value != UNET_FIXED[key]:
            raise PretrainedError(f"{where}: {key}={value!r} is not expressible in jaxgen's "
                                  f"UNet (only {UNET_FIXED[key]!r})")

    def get(key, default=None):
        return unet.get(key, default)

    size = get("sample_size")
    if size is None:
        raise PretrainedError(f"{where} has no sample_size: the image size is unknown")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    in_channels, out_channels = get("in_channels", 3), get("out_channels", 3)
    if out_channels not in (in_channels, 2 * in_channels):
        raise PretrainedError(f"{where}: out_channels={out_channels} is neither in_channels="
                              f"{in_channels} nor twice it (learned variances)")
    widths = list(get("block_out_channels", (224, 448, 672, 896)))
    channels = widths[0]
    if any(w % channels for w in widths):
        raise PretrainedError(f"{where}: block_out_channels={widths} are not multiples of the "
                              f"first, which jaxgen's channel_mults need")
    down = list(get("down_block_types", ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D",
                                         "AttnDownBlock2D")))
    up = list(get("up_block_types", ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D",
                                     "UpBlock2D")))
    for block in down:
        if block not in DOWN_BLOCKS:
            raise PretrainedError(f"{where}: cannot map the down block type '{block}'")
    for block in up:
        if block not in UP_BLOCKS:
            raise PretrainedError(f"{where}: cannot map the up block type '{block}'")
    attention = [DOWN_BLOCKS[b] for b in down]
    if len(up) != len(down) or [UP_BLOCKS[b] for b in reversed(up)] != attention:
        raise PretrainedError(f"{where}: attention in up_block_types={up} does not mirror "
                              f"down_block_types={down}, as jaxgen's UNet places it")
    if len(widths) != len(down):
        raise PretrainedError(f"{where}: {len(widths)} block_out_channels for {len(down)} "
                              f"down blocks")
    levels = len(down)
    if height % 2 ** (levels - 1) or width % 2 ** (levels - 1):
        raise PretrainedError(f"{where}: sample_size {height}x{width} is not divisible by "
                              f"{2 ** (levels - 1)}, which {levels} levels need")
    groups = get("norm_num_groups", 32)
    if groups is None or get("attn_norm_num_groups") not in (None, groups):
        raise PretrainedError(f"{where}: attention and residual blocks must share "
                              f"norm_num_groups ({groups})")
    if get("time_embedding_dim") not in (None, 4 * channels):
        raise PretrainedError(f"{where}: time_embedding_dim={get('time_embedding_dim')} is not "
                              f"4 x block_out_channels[0] = {4 * channels}")
    head_dim = get("attention_head_dim", 8)
    padding = get("downsample_padding", 1)
    if padding not in (0, 1):
        raise PretrainedError(f"{where}: downsample_padding={padding} (jaxgen: 0 or 1)")
    num_class_embeds = get("num_class_embeds") or 0
    model = {
        "channels": channels,
        "channel_mults": tuple(w // channels for w in widths),
        "num_res_blocks": get("layers_per_block", 2),
        "attention_resolutions": tuple(height >> level for level in range(levels)
                                       if attention[level]),
        "mid_attention": bool(get("add_attention", True)),
        "attention_head_dim": int(head_dim or 0),
        "dropout": float(get("dropout", 0.0)),
        "num_groups": groups,
        "norm_eps": float(get("norm_eps", 1e-5)),
        "downsample_padding": "same" if padding == 0 else "symmetric",
        "flip_sin_to_cos": bool(get("flip_sin_to_cos", True)),
        "freq_shift": float(get("freq_shift", 0)),
        "learn_variance": out_channels == 2 * in_channels,
        "conditional": num_class_embeds > 0,
    }
    return model, (height, width, in_channels), num_class_embeds


def architecture(model, height: int) -> Architecture:
    """The module layout of a config's UNet (model: the config's model section) on images
    `height` pixels high."""
    return Architecture(len(model.channel_mults), model.num_res_blocks,
                        tuple(level_resolution(height, level) in model.attention_resolutions
                              for level in range(len(model.channel_mults))),
                        model.mid_attention, model.conditional)


def level_resolution(height: int, level: int) -> int:
    """The side length the UNet works at on `level` (its `h.shape[1]`)."""
    for _ in range(level):
        height = math.ceil(height / 2)
    return height


def scheduler_settings(scheduler: dict, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """scheduler_config.json -> (jaxgen model.* keys, sample.* keys)."""
    kind = scheduler.get("_class_name", "DDPMScheduler")
    if kind not in SCHEDULER_CLASSES:
        raise PretrainedError(f"{where} describes a {kind}; jaxgen maps "
                              f"{' and '.join(SCHEDULER_CLASSES)}")

    def get(key, default=None):
        return scheduler.get(key, default)

    required = {"trained_betas": None, "thresholding": False, "steps_offset": 0,
                "rescale_betas_zero_snr": False, "clip_sample_range": 1.0,
                "set_alpha_to_one": True}
    known = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
             "variance_type", "clip_sample", "prediction_type", "timestep_spacing",
             *required, *SCHEDULER_IGNORED}
    for key in scheduler:
        if not _is_metadata(key) and key not in known:
            raise PretrainedError(f"{where}: cannot map the scheduler setting '{key}'")
    for key, value in required.items():
        if get(key, value) != value:
            raise PretrainedError(f"{where}: {key}={get(key)!r} is not supported (only "
                                  f"{value!r})")
    steps = int(get("num_train_timesteps", 1000))
    schedule = get("beta_schedule", "linear")
    model: dict[str, Any] = {"num_timesteps": steps}
    if schedule in ("linear", "scaled_linear"):
        # jaxgen states both linear schedules at T = 1000 and scales the betas by 1000/T.
        model.update(schedule=schedule, beta_start=float(get("beta_start", 0.0001)) * steps / 1000,
                     beta_end=float(get("beta_end", 0.02)) * steps / 1000)
    elif schedule == "squaredcos_cap_v2":
        model["schedule"] = "cosine"
    else:
        raise PretrainedError(f"{where}: beta_schedule='{schedule}' is not supported "
                              f"(linear, scaled_linear, squaredcos_cap_v2)")
    prediction = get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise PretrainedError(f"{where}: prediction_type='{prediction}' is not supported")
    model["prediction"] = PREDICTIONS[prediction]
    variance = get("variance_type", "fixed_small")
    if variance == "learned_range":
        model["learn_variance"] = True
    elif variance in VARIANCES:
        model.update(learn_variance=False, fixed_variance=VARIANCES[variance])
    elif kind == "DDPMScheduler":
        raise PretrainedError(f"{where}: variance_type='{variance}' is not supported")
    spacing = get("timestep_spacing", "leading")
    if spacing not in ("linspace", "leading", "trailing"):
        raise PretrainedError(f"{where}: timestep_spacing='{spacing}' is not supported")
    sample = {"clip_x0": bool(get("clip_sample", True)), "timestep_spacing": spacing,
              "sampler": "ddpm" if kind == "DDPMScheduler" else "ddim"}
    return model, sample


def to_diffusers(config, image_shape: tuple[int, int, int], num_class_embeds: int
                 ) -> tuple[dict, dict]:
    """A jaxgen diffusion config -> (UNet2DModel config, DDPMScheduler config)."""
    m = config.model
    height, width, channels = image_shape
    levels = len(m.channel_mults)
    if height % 2 ** (levels - 1) or width % 2 ** (levels - 1):
        raise PretrainedError(f"{height}x{width} images with {levels} levels: the sides must "
                              f"be divisible by {2 ** (levels - 1)} for diffusers' UNet")
    attention = list(architecture(m, height).attention_levels)
    unet = {
        "_class_name": UNET_CLASS,
        "sample_size": height if height == width else [height, width],
        "in_channels": channels,
        "out_channels": channels * (2 if m.learn_variance else 1),
        "block_out_channels": [m.channels * k for k in m.channel_mults],
        "layers_per_block": m.num_res_blocks,
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "add_attention": bool(m.mid_attention),
        "attention_head_dim": m.attention_head_dim or None,
        "dropout": m.dropout,
        "norm_num_groups": m.num_groups,
        "norm_eps": m.norm_eps,
        "downsample_padding": 0 if m.downsample_padding == "same" else 1,
        "flip_sin_to_cos": bool(m.flip_sin_to_cos),
        "freq_shift": m.freq_shift,
        "num_class_embeds": num_class_embeds or None,
        **UNET_FIXED,
    }
    steps = m.num_timesteps
    scheduler = {"_class_name": "DDPMScheduler", "num_train_timesteps": steps,
                 "prediction_type": {v: k for k, v in PREDICTIONS.items()}[m.prediction],
                 "variance_type": "learned_range" if m.learn_variance else
                 f"fixed_{m.fixed_variance}",
                 "clip_sample": bool(config.sample.clip_x0), "clip_sample_range": 1.0,
                 "timestep_spacing": config.sample.timestep_spacing, "trained_betas": None,
                 "thresholding": False, "steps_offset": 0, "rescale_betas_zero_snr": False}
    scheduler.update(scheduler_betas(m))
    return unet, scheduler


def scheduler_betas(m) -> dict[str, Any]:
    """config.model -> the DDPMScheduler settings of its noise schedule (diffusers states
    betas at the run's T, jaxgen at T = 1000)."""
    if m.schedule == "cosine":
        return {"beta_schedule": "squaredcos_cap_v2"}
    return {"beta_schedule": m.schedule, "beta_start": m.beta_start * 1000 / m.num_timesteps,
            "beta_end": m.beta_end * 1000 / m.num_timesteps}
