"""Device mesh, shardings and multi-host helpers.

Data parallelism is `jax.jit` over a one-axis `Mesh` named "data": parameters are
replicated, batches are split along their leading axis. Each process holds only its
own rows of a global batch; `jax.make_array_from_process_local_data` assembles them.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Joins a multi-process job through `jax.distributed.initialize`.

    With no arguments JAX detects the cluster itself (Cloud TPU pods, SLURM, Open MPI).
    On CPU (tests, loopback) collectives go through gloo.
    """
    if jax.config.jax_platforms in (None, "", "cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if coordinator_address:
        kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                      process_id=process_id)
    jax.distributed.initialize(**kwargs)


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over every device of every process (or the first num_devices / P of each
    of the P processes), grouped by process.

    Grouping by process keeps each process's rows of a batch on its own devices.
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if num_devices is not None and num_devices != len(devices):
        per_process = num_devices // jax.process_count()
        devices = [d for p in range(jax.process_count())
                   for d in [d for d in devices if d.process_index == p][:per_process]]
    return Mesh(np.array(devices), (DATA_AXIS,))


def padded(batch_size: int, mesh: Mesh | None = None) -> int:
    """batch_size rounded up to a multiple of the devices (of mesh): the shape an evaluation
    or sampling batch takes on the mesh, its extra rows masked or dropped."""
    count = mesh.size if mesh is not None else jax.device_count()
    return -(-batch_size // count) * count


def devices_dividing(batch_size: int) -> int:
    """The most devices (the same number from every process) that split batch_size evenly:
    where a fixed batch must train on any machine (the evaluation classifier's)."""
    processes, local = jax.process_count(), jax.local_device_count()
    for per_process in range(local, 0, -1):
        if batch_size % (per_process * processes) == 0:
            return per_process * processes
    raise ValueError(f"a batch of {batch_size} does not split over {processes} processes")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def process_rows(global_batch: int) -> slice:
    """The rows of a global batch that this process supplies."""
    count, index = jax.process_count(), jax.process_index()
    per_process = global_batch // count
    return slice(index * per_process, (index + 1) * per_process)


def to_global(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Host-local rows [B/P, ...] of each entry -> one global array [B, ...] split on "data"."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def is_primary() -> bool:
    """Process 0 writes logs and pictures; every process takes part in checkpoints."""
    return jax.process_index() == 0


def fetch(tree: Any) -> Any:
    """Device -> host for replicated (fully addressable) values."""
    return jax.device_get(tree)
