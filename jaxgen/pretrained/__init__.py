"""Pretrained diffusion models in diffusers' folder format, read and written without PyTorch.

A diffusers UNet folder is `config.json` (a UNet2DModel's settings) beside
`diffusion_pytorch_model.safetensors`, as `save_pretrained` writes it; a pipeline folder
(`model_index.json`) holds it in `unet/` beside `scheduler/scheduler_config.json`.

    folder = jaxgen.pretrained.read("ddpm-cifar10-32")  # settings as jaxgen keys, tensors
    params = jaxgen.pretrained.to_flax(folder.tensors, config.model, height, shapes, where)
    jaxgen.pretrained.export(config, data_spec, params, "out")

(`runs.load_pretrained` joins them with a family: config, network, params.) `read` maps the
settings to jaxgen's diffusion keys (`configs`), `to_flax` every tensor to the UNet's parameters
(`unet_keys`); they refuse, in one line naming it, a setting that does not map, a tensor
without a place, a missing tensor or one of another shape: never a partial load.
`export` writes the pipeline layout plus `jaxgen_config.json`, the run's whole config, so that
importing the export restores the run's data and settings too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxgen.data.sources import DataSpec
from jaxgen.pretrained import configs, unet_keys
from jaxgen.pretrained.configs import PretrainedError

__all__ = ["Folder", "PretrainedError", "read", "to_flax", "to_torch", "export"]

WEIGHTS = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX = WEIGHTS + ".index.json"
PICKLED_WEIGHTS = "diffusion_pytorch_model.bin"
JAXGEN_CONFIG = "jaxgen_config.json"
SCHEDULER_CONFIG = "scheduler_config.json"


@dataclasses.dataclass
class Folder:
    """A diffusers folder, read and mapped. model, sample: values of jaxgen's model.* and
    sample.* keys; image_shape (H, W, C); num_class_embeds (0: unconditional); jaxgen_config:
    the run's config where jaxgen exported it, else None; tensors: the weights by diffusers
    key; weights: the file they came from (for errors)."""
    path: str
    model: dict[str, Any]
    sample: dict[str, Any]
    image_shape: tuple[int, int, int]
    num_class_embeds: int
    jaxgen_config: dict | None
    tensors: dict[str, np.ndarray]
    weights: str


def read(path: str) -> Folder:
    """The diffusers folder at `path` (a UNet folder or a pipeline folder), its settings
    mapped to jaxgen keys; PretrainedError (one line) for anything that does not map."""
    unet_dir, scheduler_file, jaxgen_file = locate(path)
    unet = _read_json(os.path.join(unet_dir, "config.json"))
    model, image_shape, num_class_embeds = configs.unet_settings(
        unet, os.path.join(unet_dir, "config.json"))
    scheduler = _read_json(scheduler_file) if scheduler_file else configs.DEFAULT_SCHEDULER
    schedule, sample = configs.scheduler_settings(scheduler, scheduler_file or
                                                  "DDPMScheduler's defaults")
    if schedule.pop("learn_variance", model["learn_variance"]) != model["learn_variance"]:
        raise PretrainedError(f"{scheduler_file}: variance_type={scheduler.get('variance_type')}"
                              f" disagrees with out_channels={unet.get('out_channels')}")
    jaxgen_config = _read_json(jaxgen_file) if jaxgen_file else None
    if jaxgen_config is not None and jaxgen_config.get("family") != "diffusion":
        raise PretrainedError(f"{jaxgen_file} is a {jaxgen_config.get('family')} config, not "
                              f"diffusion")
    return Folder(path, {**model, **schedule}, sample, image_shape, num_class_embeds,
                  jaxgen_config, read_weights(unet_dir), os.path.join(unet_dir, WEIGHTS))


def locate(path: str) -> tuple[str, str | None, str | None]:
    """(the UNet's folder, the scheduler config or None, jaxgen_config.json or None)."""
    if not os.path.isdir(path):
        raise PretrainedError(f"no folder '{path}'")
    if os.path.isfile(os.path.join(path, "model_index.json")):
        unet_dir = os.path.join(path, "unet")
        if not os.path.isfile(os.path.join(unet_dir, "config.json")):
            raise PretrainedError(f"{path}/model_index.json names no unet/config.json: not a "
                                  f"UNet2DModel pipeline")
        parents = [path]
    elif os.path.isfile(os.path.join(path, "config.json")):
        unet_dir, parents = path, [path, os.path.dirname(os.path.abspath(path))]
    else:
        raise PretrainedError(f"'{path}' holds neither config.json nor model_index.json: not a "
                              f"diffusers folder")
    candidates = [os.path.join(unet_dir, SCHEDULER_CONFIG)] + [
        os.path.join(p, "scheduler", SCHEDULER_CONFIG) for p in parents]
    scheduler = next((c for c in candidates if os.path.isfile(c)), None)
    jaxgen = next((os.path.join(p, JAXGEN_CONFIG) for p in parents
                   if os.path.isfile(os.path.join(p, JAXGEN_CONFIG))), None)
    return unet_dir, scheduler, jaxgen


def _read_json(file: str) -> dict:
    try:
        with open(file, encoding="utf-8") as f:
            tree = json.load(f)
    except (OSError, ValueError) as e:
        raise PretrainedError(f"cannot read {file}: {e}") from None
    if not isinstance(tree, dict):
        raise PretrainedError(f"{file} holds no JSON object")
    return tree


def read_weights(unet_dir: str) -> dict[str, np.ndarray]:
    """{key: array} of the folder's safetensors (one file or an index of shards)."""
    from safetensors.numpy import load_file

    single, index = os.path.join(unet_dir, WEIGHTS), os.path.join(unet_dir, WEIGHTS_INDEX)
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        shards = _read_json(index).get("weight_map", {}).values()
        files = [os.path.join(unet_dir, name) for name in sorted(set(shards))]
    elif os.path.isfile(os.path.join(unet_dir, PICKLED_WEIGHTS)):
        raise PretrainedError(f"{unet_dir} has only {PICKLED_WEIGHTS}, a PyTorch pickle, which "
                              f"jaxgen does not unpickle: convert it once with diffusers "
                              f"(UNet2DModel.from_pretrained(DIR).save_pretrained(DIR))")
    else:
        raise PretrainedError(f"{unet_dir} has no {WEIGHTS}")
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        try:
            tensors.update(load_file(file))
        except TypeError as e:  # numpy has no bfloat16
            raise PretrainedError(f"{file}: {e}; save the model in float32 or float16") from None
        except (OSError, ValueError, RuntimeError) as e:
            raise PretrainedError(f"cannot read {file}: {e}") from None
    return tensors


def _pairs(model, height: int, params) -> list[unet_keys.LeafPair]:
    return unet_keys.leaf_pairs(configs.architecture(model, height), params)


def to_flax(tensors: dict[str, np.ndarray], model, height: int, shapes, where: str) -> dict:
    """diffusers tensors -> the params tree of the UNet that `model` (a config's model
    section) builds on images `height` high, whose shapes are `shapes`: every tensor placed,
    every parameter given, every shape checked."""
    tensors = unet_keys.split_fused({unet_keys.canonical_key(k): v for k, v in tensors.items()})
    pairs = {p.torch_key: p for p in _pairs(model, height, shapes)}
    for key in tensors:
        if key not in pairs:
            raise PretrainedError(f"{where}: cannot map tensor '{key}' to jaxgen's UNet")
    leaves = {}
    flat_shapes = unet_keys.flatten(shapes)
    for key, pair in pairs.items():
        if key not in tensors:
            raise PretrainedError(f"{where} lacks tensor '{key}'")
        value = tensors[key]
        expected = pair.torch_shape(flat_shapes[pair.flax_path].shape)
        if value.shape != expected and not (pair.layout == "dense" and
                                            value.shape == expected + (1, 1)):
            raise PretrainedError(f"{where}: tensor '{key}' has shape {list(value.shape)}, the "
                                  f"config implies {list(expected)}")
        leaves[pair.flax_path] = pair.to_flax(value).astype(np.float32)
    return unet_keys.unflatten(leaves)


def to_torch(params: dict, model, height: int) -> dict[str, np.ndarray]:
    """The UNet's params tree -> diffusers' state dict (float32, PyTorch layouts)."""
    params = jax.tree.map(np.asarray, params)
    flat = unet_keys.flatten(params)
    return {p.torch_key: p.to_torch(flat[p.flax_path]).astype(np.float32)
            for p in _pairs(model, height, params)}


def export(config: ml_collections.ConfigDict, data: DataSpec, params: Any, out: str
           ) -> list[str]:
    """Writes a diffusers pipeline folder at `out` (which must not exist or be empty):
    model_index.json, unet/{config.json, diffusion_pytorch_model.safetensors},
    scheduler/scheduler_config.json and jaxgen_config.json. Written into a temporary
    folder first, so a failure leaves nothing half-written. Returns the files written."""
    from safetensors.numpy import save_file

    if config.family != "diffusion":
        raise PretrainedError(f"export writes diffusion UNets; this run is a {config.family}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise PretrainedError(f"'{out}' exists and is not an empty folder")
    classes = data.num_classes if config.model.conditional else 0
    num_class_embeds = classes + int(config.model.null_label) if classes else 0
    unet, scheduler = configs.to_diffusers(config, data.image_shape, num_class_embeds)
    state_dict = to_torch(params, config.model, data.image_shape[0])
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        os.makedirs(os.path.join(staging, "unet"))
        os.makedirs(os.path.join(staging, "scheduler"))
        files = {
            "model_index.json": {"_class_name": "DDPMPipeline",
                                 "unet": ["diffusers", "UNet2DModel"],
                                 "scheduler": ["diffusers", "DDPMScheduler"]},
            "unet/config.json": unet,
            f"scheduler/{SCHEDULER_CONFIG}": scheduler,
            JAXGEN_CONFIG: json.loads(config.to_json()),
        }
        for name, tree in files.items():
            with open(os.path.join(staging, name), "w", encoding="utf-8") as f:
                json.dump(tree, f, indent=2)
                f.write("\n")
        save_file(state_dict, os.path.join(staging, "unet", WEIGHTS), metadata={"format": "pt"})
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(os.path.join(out, name) for name in [*files, f"unet/{WEIGHTS}"])
