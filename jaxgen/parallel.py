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


def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every process, grouped by process.

    Grouping by process keeps each process's rows of a batch on its own devices.
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devices), (DATA_AXIS,))


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
