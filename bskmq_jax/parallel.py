"""Data parallelism over a device mesh, on one host or several.

One mesh axis, ``"data"``, spans every device of every process. Model and
optimizer state are replicated (`replicate`); each batch is split along its
first axis (`shard_batch`). The jitted train step then runs as one SPMD
program: XLA inserts the cross-device reductions, so the mean loss, its
gradients (an all-reduce), BatchNorm batch statistics and the DAC's
per-tensor input scale are those of the whole global batch, and the result
equals a one-device step up to float summation order.

Calibration statistics merge across devices the same way: a ``CALIBRATE``
forward over a sharded batch updates every layer's `CalibrationStats` with
the global batch (range from the global minimum and maximum, exact integer
counts summed over devices), replicated on every device. This is the merge
`bskmq_jax.stats.allreduce` performs inside ``shard_map``.

Several hosts: every process runs the same program; `initialize` connects
them (``jax.distributed.initialize``) from flags or the environment
variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID``. Each process reads the same global batch stream and
contributes its own rows (`shard_batch` builds the global array from
process-local data); checkpoints go to a folder all hosts share.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["initialize", "make_mesh", "batch_sharding", "replicated", "replicate", "shard_batch", "describe"]

AXIS = "data"
ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES", "process_id": "JAX_PROCESS_ID"}


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> bool:
    """Connects the processes of a multi-host run (before any other JAX call).

    Each argument falls back to its environment variable (`ENV`). Nothing
    happens when neither gives a coordinator and at most one process.

    Returns:
      True if ``jax.distributed.initialize`` was called.

    Raises:
      ValueError: when the settings are incomplete or inconsistent (naming
        the flag and its variable).
    """
    coordinator = coordinator or os.environ.get(ENV["coordinator"]) or None
    try:
        num_processes = int(num_processes if num_processes is not None else os.environ.get(ENV["num_processes"], 1))
        pid_raw = process_id if process_id is not None else os.environ.get(ENV["process_id"])
        process_id = None if pid_raw is None else int(pid_raw)
    except ValueError as e:
        raise ValueError(f"num_processes/process_id: must be integers ({e})") from None
    if num_processes < 1:
        raise ValueError(f"num_processes: {num_processes} must be >= 1 (--num-processes or {ENV['num_processes']})")
    if coordinator is None and num_processes == 1:
        return False
    if coordinator is None:
        raise ValueError(f"coordinator: {num_processes} processes need a coordinator address host:port "
                         f"(--coordinator or {ENV['coordinator']})")
    if process_id is None or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id: {process_id!r} must be in [0, {num_processes}) (--process-id or {ENV['process_id']})")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: every device of every process)."""
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise ValueError("devices: an empty device list")
    return Mesh(np.array(devs), (AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``"data"``, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full array on every device."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(node, mesh: Mesh):
    """Puts every array of an NNX object (model, optimizer) on all devices of ``mesh``, in place."""
    state = nnx.state(node)
    nnx.update(node, jax.device_put(state, replicated(mesh)))
    return node


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Splits a global batch (numpy, identical on every process) over the ``"data"`` axis.

    Each process passes the whole global batch and contributes the rows of
    its own devices.

    Raises:
      ValueError: when the batch size is not a multiple of the mesh size.
    """
    sharding = batch_sharding(mesh)
    out = {}
    for name, x in batch.items():
        x = np.asarray(x)
        if x.shape[0] % mesh.size:
            raise ValueError(f"batch: {name} has {x.shape[0]} rows, not a multiple of the {mesh.size} devices of the mesh")
        if jax.process_count() == 1:
            out[name] = jax.device_put(x, sharding)
            continue
        rows = x.shape[0] // jax.process_count()
        local = x[jax.process_index() * rows:(jax.process_index() + 1) * rows]
        out[name] = jax.make_array_from_process_local_data(sharding, local, x.shape)
    return out


def describe(mesh: Mesh | None) -> dict:
    """Processes and devices of a run, for result files."""
    if mesh is None:
        return {"processes": jax.process_count(), "devices": 1, "data_parallel": False}
    return {"processes": jax.process_count(), "devices": int(mesh.size), "data_parallel": True,
            "platform": mesh.devices.flat[0].platform}
