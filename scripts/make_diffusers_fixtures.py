"""Regenerates tests/fixtures/diffusers: small random diffusers UNets and what diffusers itself
computes with them, so that CI checks jaxgen's import against diffusers without PyTorch.

    pip install -e .[interop]          # PyTorch and diffusers
    python scripts/make_diffusers_fixtures.py [--out tests/fixtures/diffusers]

For each spec in SPECS: a UNet2DModel with random weights (every parameter perturbed, so that
GroupNorm scales and biases are not their 1 and 0), written by `save_pretrained` in the spec's
layout, with `recorded.safetensors`: inputs (`sample` [B, C, H, W], `timestep`, `class_labels`)
and diffusers' `output`; where the spec names a DDIM run, its initial noise `ddim_noise` and
the final sample `ddim_result` of diffusers' DDIMScheduler loop (eta 0,
use_clipped_model_output=True). `recorded.json` says which versions computed it. Beside them,
`ddpm_cifar10_manifest.json`: every key -> shape of the full-size DDPM CIFAR-10 UNet
(Ho et al. 2020; google/ddpm-cifar10-32's config), built here with random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "diffusers")

# google/ddpm-cifar10-32's UNet config (diffusers' conversion of Ho et al.'s checkpoint).
DDPM_CIFAR10 = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "norm_num_groups": 32, "norm_eps": 1e-6,
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1,
    "center_input_sample": False, "time_embedding_type": "positional", "act_fn": "silu",
    "mid_block_scale_factor": 1,
}
DDPM_CIFAR10_PARAMETERS = 35_746_307

# name -> (UNet2DModel kwargs, scheduler (class, kwargs) or None, layout, batch, DDIM steps).
# layout: "pipeline" (model_index.json, unet/, scheduler/), "unet" (the UNet folder alone),
# "beside" (unet/ and scheduler/ without model_index.json: the test loads unet/).
SPECS = {
    # DDPM CIFAR-10's design, small: attention at one level, DDPM's embedding and padding,
    # the linear schedule with the fixed large variance.
    "ddpm_attention": dict(
        unet=dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=[8, 16, 16],
                  layers_per_block=1,
                  down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
                  up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
                  attention_head_dim=None, norm_num_groups=4, norm_eps=1e-6,
                  downsample_padding=0, flip_sin_to_cos=False, freq_shift=1),
        scheduler=("DDPMScheduler", dict(num_train_timesteps=1000, beta_schedule="linear",
                                         beta_start=1e-4, beta_end=0.02,
                                         variance_type="fixed_large", clip_sample=True)),
        layout="pipeline", batch=4, ddim_steps=10, classes=0),
    # diffusers' own defaults (cos first, shift 0, symmetric padding, eps 1e-5), grey images,
    # no attention anywhere, no scheduler.
    "plain_grey": dict(
        unet=dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=[8, 16],
                  layers_per_block=2, down_block_types=["DownBlock2D", "DownBlock2D"],
                  up_block_types=["UpBlock2D", "UpBlock2D"], add_attention=False,
                  norm_num_groups=4),
        scheduler=None, layout="unet", batch=3, ddim_steps=0, classes=0),
    # Class-conditional, multi-head attention at two levels, multipliers 1, 1, 2, learned
    # variances, the cosine schedule, v-prediction, no clipping, trailing timesteps.
    "class_conditional": dict(
        unet=dict(sample_size=8, in_channels=3, out_channels=6, block_out_channels=[8, 8, 16],
                  layers_per_block=1,
                  down_block_types=["AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                  up_block_types=["AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"],
                  attention_head_dim=4, norm_num_groups=4, num_class_embeds=5),
        scheduler=("DDPMScheduler", dict(num_train_timesteps=1000,
                                         beta_schedule="squaredcos_cap_v2",
                                         variance_type="learned_range",
                                         prediction_type="v_prediction", clip_sample=False,
                                         timestep_spacing="trailing")),
        layout="beside", batch=4, ddim_steps=8, classes=5),
}
TIMESTEPS = [0, 17, 500, 999]


def random_unet(kwargs: dict, seed: int):
    """A UNet2DModel with every parameter perturbed away from its initialiser's values."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(**kwargs).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet


def record(unet, spec: dict, seed: int) -> dict:
    """diffusers' outputs on fixed random inputs, and a DDIM loop where the spec asks: numpy
    arrays by name."""
    import numpy as np
    import torch
    from diffusers import DDIMScheduler

    generator = torch.Generator().manual_seed(seed)
    c, size = unet.config.in_channels, unet.config.sample_size
    batch = spec["batch"]
    sample = torch.randn(batch, c, size, size, generator=generator)
    timestep = torch.tensor([TIMESTEPS[i % len(TIMESTEPS)] for i in range(batch)])
    labels = torch.arange(batch) % spec["classes"] if spec["classes"] else None
    with torch.no_grad():
        output = unet(sample, timestep, class_labels=labels).sample
    arrays = {"sample": sample, "timestep": timestep, "output": output}
    if labels is not None:
        arrays["class_labels"] = labels
    if spec["ddim_steps"]:
        kind, kwargs = spec["scheduler"]
        scheduler = DDIMScheduler(**{k: v for k, v in kwargs.items() if k != "variance_type"})
        scheduler.set_timesteps(spec["ddim_steps"])
        noise = torch.randn(2, c, size, size, generator=generator)
        ddim_labels = labels[:2] if labels is not None else None
        x = noise
        with torch.no_grad():
            for t in scheduler.timesteps:
                out = unet(x, t, class_labels=ddim_labels).sample[:, :c]  # the mean's channels
                x = scheduler.step(out, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        arrays.update(ddim_noise=noise, ddim_result=x,
                      ddim_timesteps=scheduler.timesteps.clone())
    return {k: np.ascontiguousarray(v.numpy()) for k, v in arrays.items()}


def save(unet, spec: dict, directory: str) -> None:
    """The spec's folder layout, as diffusers writes it."""
    from diffusers import DDPMPipeline, DDPMScheduler

    scheduler = DDPMScheduler(**spec["scheduler"][1]) if spec["scheduler"] else None
    if spec["layout"] == "pipeline":
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(directory)
    elif spec["layout"] == "unet":
        unet.save_pretrained(directory)
    else:
        unet.save_pretrained(os.path.join(directory, "unet"))
        scheduler.save_pretrained(os.path.join(directory, "scheduler"))


def model_path(directory: str, spec: dict) -> str:
    """What a user passes as --pretrained for the spec's layout."""
    return os.path.join(directory, "unet") if spec["layout"] == "beside" else directory


def make(name: str, out: str, seed: int) -> None:
    from safetensors.numpy import save_file

    spec = SPECS[name]
    directory = os.path.join(out, name)
    shutil.rmtree(directory, ignore_errors=True)
    unet = random_unet(spec["unet"], seed)
    save(unet, spec, directory)
    save_file(record(unet, spec, seed + 1000), os.path.join(directory, "recorded.safetensors"))
    with open(os.path.join(directory, "recorded.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": versions(), "seed": seed, "timesteps": TIMESTEPS,
                   "ddim": {"steps": spec["ddim_steps"], "eta": 0.0,
                            "use_clipped_model_output": True}}, f, indent=2)
        f.write("\n")


def manifest(out: str) -> None:
    """Key -> shape of the full-size DDPM CIFAR-10 UNet."""
    from diffusers import UNet2DModel

    unet = UNet2DModel(**DDPM_CIFAR10)
    shapes = {k: list(v.shape) for k, v in unet.state_dict().items()}
    count = sum(p.numel() for p in unet.parameters())
    assert count == DDPM_CIFAR10_PARAMETERS, count
    with open(os.path.join(out, "ddpm_cifar10_manifest.json"), "w", encoding="utf-8") as f:
        json.dump({"config": dict(unet.config), "parameters": count, "shapes": shapes,
                   "versions": versions()}, f, indent=1)
        f.write("\n")


def versions() -> dict:
    import diffusers
    import torch
    return {"diffusers": diffusers.__version__, "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=OUT)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for seed, name in enumerate(SPECS):
        make(name, args.out, seed)
        print("wrote", os.path.join(args.out, name))
    manifest(args.out)
    print("wrote", os.path.join(args.out, "ddpm_cifar10_manifest.json"))


if __name__ == "__main__":
    main()
