"""The full-size DDPM CIFAR-10 UNet through diffusers and back: equality and speed, jaxgen against
diffusers on the same machine.

python -m benchmarks.pretrained_interop [--batch 8] [--num 16] [--steps 50] [--out FILE]

Needs `pip install -e .[interop]` (PyTorch, diffusers). Builds google/ddpm-cifar10-32's network
(35,746,307 parameters) with random weights, every parameter perturbed
(scripts/make_diffusers_fixtures.py), saves it as a DDPMPipeline folder, and measures:
- the import: seconds to read and map the folder (`runs.pretrained_config` + `load_pretrained`);
- the network: max abs difference of jaxgen's and diffusers' outputs on `--batch` random inputs
  at timesteps spread over [0, 999];
- DDIM (eta 0, `--steps`, leading spacing, clipped x0 with use_clipped_model_output=True) on
  `--num` images from the same noise: max abs difference of the final images, and images/s of
  each (jaxgen's compile time apart);
- the export: `UNet2DModel.from_pretrained` of jaxgen's export gives jaxgen's outputs.
Writes benchmarks/results/pretrained_interop_<device>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--num", type=int, default=16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    import diffusers
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from scripts import make_diffusers_fixtures as fixtures
    from jaxgen import pretrained
    from jaxgen.engine import runs
    from jaxgen.training import workdir as workdir_lib
    from jaxgen.core.state import TrainState

    torch.manual_seed(0)
    unet = fixtures.random_unet(fixtures.DDPM_CIFAR10, seed=0)
    scheduler = diffusers.DDPMScheduler(beta_schedule="linear", variance_type="fixed_large")
    record = {"parameters": sum(p.numel() for p in unet.parameters())}
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "ddpm-cifar10-32-random")
        diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
        start = time.perf_counter()
        model = runs.load_pretrained(*runs.pretrained_config(folder, ["sample.sampler=ddim",
                                                                      f"sample.steps={args.steps}"]))
        record["import_seconds"] = time.perf_counter() - start

        generator = torch.Generator().manual_seed(1)
        x = torch.randn(args.batch, 3, 32, 32, generator=generator)
        t = torch.linspace(0, 999, args.batch).round().long()
        with torch.no_grad():
            theirs = unet(x, t).sample.numpy()
        apply = jax.jit(model.family.model.apply)
        ours = np.asarray(apply({"params": model.params},
                                jnp.asarray(x.numpy().transpose(0, 2, 3, 1)),
                                jnp.asarray(t.numpy(), jnp.int32))).transpose(0, 3, 1, 2)
        record["output_max_abs_difference"] = float(np.abs(ours - theirs).max())
        record["output_max_abs"] = float(np.abs(theirs).max())

        noise = torch.randn(args.num, 3, 32, 32, generator=generator)
        ddim = diffusers.DDIMScheduler.from_config(scheduler.config)
        ddim.set_timesteps(args.steps)
        start = time.perf_counter()
        sample = noise
        with torch.no_grad():
            for step in ddim.timesteps:
                sample = ddim.step(unet(sample, step).sample, step, sample, eta=0.0,
                                   use_clipped_model_output=True).prev_sample
        torch_seconds = time.perf_counter() - start
        state = TrainState(step=jnp.zeros((), jnp.int32), params=model.params, opt_state=(),
                           rng=jnp.zeros((2,), jnp.uint32))
        x_T = jnp.asarray(noise.numpy().transpose(0, 2, 3, 1))
        trajectory = jax.jit(lambda s, x: model.family.trajectory(s, jax.random.key(0), args.num,
                                                                  x_T=x)[0])
        start = time.perf_counter()
        compiled = trajectory.lower(state, x_T).compile()
        compile_seconds = time.perf_counter() - start
        start = time.perf_counter()
        final = np.asarray(jax.block_until_ready(compiled(state, x_T)))
        jax_seconds = time.perf_counter() - start
        record["ddim"] = {
            "steps": args.steps, "num_images": args.num,
            "final_max_abs_difference": float(np.abs(final.transpose(0, 3, 1, 2)
                                                     - sample.numpy()).max()),
            "diffusers_images_per_second": args.num / torch_seconds,
            "jaxgen_images_per_second": args.num / jax_seconds,
            "jaxgen_compile_seconds": compile_seconds}

        exported = os.path.join(tmp, "export")
        pretrained.export(model.config, model.data, model.params, exported)
        reloaded = diffusers.UNet2DModel.from_pretrained(exported, subfolder="unet").eval()
        with torch.no_grad():
            again = reloaded(x, t).sample.numpy()
        record["export_output_max_abs_difference"] = float(np.abs(ours - again).max())
    for key, value in record.items():
        print(f"{key}: {value}")
    device = jax.devices()[0].platform
    out = args.out or os.path.join(ROOT, "benchmarks", "results",
                                   f"pretrained_interop_{device}.json")
    workdir_lib.write_json_atomic(out, {
        "command": "python " + " ".join(sys.argv), "device": str(jax.devices()[0]),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "diffusers": diffusers.__version__, **record, "run": workdir_lib.run_record()})


if __name__ == "__main__":
    main()
