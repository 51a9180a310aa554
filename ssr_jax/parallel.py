"""Several devices, and several hosts, with JAX's own machinery: one `Mesh`, `NamedSharding`s and `jax.jit`.

The mesh has two axes:
  member  the vmapped member axis of a group (seeds, λ, learning rates) is split across devices: eight devices
          train eight ablation members at once. A group whose size is not a multiple of the axis is padded with
          copies of its last member, whose results are dropped.
  data    each training batch is split across devices (data parallelism); parameters are replicated and XLA's
          partitioner inserts the gradient and BatchNorm all-reduces, so a step computes what one device computes.
`config.parallel.members × config.parallel.data` devices are used (default 1 × 1: one device, no sharding). By
default the dataset is replicated on every device as uint8 (≈12 KB per 64×64 image) and each device gathers its own
part of a batch from its copy, so no image crosses devices. With `config.parallel.shard_data` the dataset is split
over the data axis instead (each device holds 1/data of the training split and its slice of every evaluation
batch): device memory per device falls by that factor, each step's batch is gathered across devices by XLA (a
batch of 50 is ≈0.6 MB), and the sampling, and so the numbers, stay those of one device.

Multi-host: `initialize_distributed()` calls `jax.distributed.initialize()` when a cluster environment is present
(Slurm with more than one task, or an explicit JAX_COORDINATOR_ADDRESS), so `jax.devices()` spans every host and
the same mesh code runs unchanged; each host loads the dataset itself (a prepared dataset is read from the shared
data_dir), and only process 0 writes run files (`is_writer()`).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssr_jax.config_lib import ConfigError
from ssr_jax.data import pad_rows

MEMBER_AXIS, DATA_AXIS = "member", "data"


def initialize_distributed() -> bool:
    """Joins a multi-host job when the environment describes one; returns whether it did. Idempotent."""
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or slurm_tasks > 1:
        if not jax.distributed.is_initialized():
            jax.distributed.initialize()  # reads the coordinator, process count and id from Slurm or JAX_* vars
        return True
    return False


def is_writer() -> bool:
    """Whether this process writes run files (process 0 of a multi-host job, or the only process)."""
    return jax.process_index() == 0


def wait_for_writer(name: str) -> None:
    """On several hosts, blocks every process here until all have arrived (process 0 after writing what the others
    then read); alone, returns at once. Every process must call it at the same point."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def check_devices(members: int, data: int) -> None:
    """Raises `ConfigError` unless this process sees members·data devices; run before anything is written."""
    available = jax.device_count()
    if members * data > available:
        raise ConfigError(f"parallel.members × parallel.data = {members} × {data} devices requested, {available} "
                          f"{jax.default_backend()} device(s) available; lower them to fit (1 × 1 is one device)")


def make_mesh(members: int, data: int) -> Mesh | None:
    """A (member × data) mesh over the first members·data devices; None for a single device (nothing to shard)."""
    if members * data == 1:
        return None
    check_devices(members, data)
    devices = jax.devices()
    return Mesh(np.asarray(devices[: members * data]).reshape(members, data), (MEMBER_AXIS, DATA_AXIS))


def padded_members(count: int, mesh: Mesh | None) -> int:
    """Members to train so that the member axis splits evenly over the mesh (≥ count)."""
    axis = mesh.shape[MEMBER_AXIS] if mesh is not None else 1
    return -(-count // axis) * axis


def place(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """`leaf` laid out as `sharding`. On one host that is `device_put`. On a mesh spanning several hosts
    `device_put` refuses devices this process cannot address, so: an array that is already global is resharded by
    an identity program, and a host value (the same on every process, as each process computes it) becomes a global
    array from the pieces this process's devices hold."""
    return place_all([leaf], sharding)[0]


def place_all(leaves: list[Any], sharding: NamedSharding) -> list[jax.Array]:
    """`place` for each of `leaves`, with the global arrays among them resharded by one identity program together
    rather than one program (a lowering, a compilation-cache lookup and a collective) per leaf: a restored training
    state has hundreds of leaves."""
    if sharding.is_fully_addressable:
        return [jax.device_put(leaf, sharding) for leaf in leaves]
    placed: list[Any] = [None] * len(leaves)
    spread = [index for index, leaf in enumerate(leaves) if isinstance(leaf, jax.Array) and not
              leaf.is_fully_addressable and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)]
    if spread:  # host values only (a dataset, a restored state): no program at all
        resharded = jax.jit(_identity, out_shardings=[sharding] * len(spread))([leaves[index] for index in spread])
        for index, array in zip(spread, resharded):
            placed[index] = array
    for index, leaf in enumerate(leaves):
        if placed[index] is not None:
            continue
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = place_all([jax.random.key_data(leaf)], sharding)[0]
            placed[index] = jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        else:
            host = np.asarray(leaf)
            placed[index] = jax.make_array_from_callback(host.shape, sharding, lambda where, host=host: host[where])
    return placed


def shard_members(tree: Any, mesh: Mesh | None) -> Any:
    """Places every leaf's leading (member) axis across the mesh's member axis."""
    if mesh is None:
        return tree
    leaves, structure = jax.tree.flatten(tree)
    return jax.tree.unflatten(structure, place_all(leaves, NamedSharding(mesh, PartitionSpec(MEMBER_AXIS))))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Places a copy of every leaf on every device of the mesh (or on the default device without one)."""
    if mesh is None:
        return jax.device_put(tree)
    leaves, structure = jax.tree.flatten(tree)
    return jax.tree.unflatten(structure, place_all(leaves, NamedSharding(mesh, PartitionSpec())))


def place_dataset(host: dict, mesh: Mesh | None, *, shard: bool) -> dict:
    """The splits `{"train": {name: [N, ...]}, "test": {name: [batches, batch, ...]}[, "val": like test]}` on the
    devices: replicated, or with `shard` split over the data axis (training examples, and each evaluation batch).
    Training rows are padded to a multiple of the axis with zeros that no permutation reaches (the caller draws from
    the true count)."""
    if not shard or mesh is None or mesh.shape[DATA_AXIS] == 1:
        return replicate(host, mesh)
    rows = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    batch_rows = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))
    return {"train": {name: place(pad_rows(array, -len(array) % mesh.shape[DATA_AXIS]), rows)
                      for name, array in host["train"].items()},
            **{split: {name: place(array, batch_rows) for name, array in batches.items()}
               for split, batches in host.items() if split != "train"}}


def fetch(tree: Any) -> Any:
    """Host NumPy copies of device arrays. Arrays spread over several hosts' devices (a member-sharded group on a
    multi-host mesh) are not addressable from one process; they are all-gathered first (`gather`), so every process
    sees them whole."""
    leaves, structure = jax.tree.flatten(tree)
    spread = [index for index, leaf in enumerate(leaves)
              if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable]
    for index, whole in zip(spread, gather([leaves[index] for index in spread])):
        leaves[index] = whole
    return jax.tree.unflatten(structure, [np.asarray(jax.device_get(leaf)) for leaf in leaves])


def gather(arrays: list[jax.Array]) -> list[Any]:
    """Whole copies of `arrays` (global arrays, possibly spread over hosts) on this process, each as an array of
    this process's devices (NumPy where they were gathered).

    One all-gather per (dtype, row count, layout), not one per array: the arrays are laid side by side as
    [rows, columns] — their leading axis (members, or data rows) is the one sharded — and gathered in one program.
    Over gloo on CPU hosts each collective costs milliseconds, and a training state has hundreds of leaves (every
    parameter, BatchNorm statistic and Adam moment), which a checkpoint save gathered one by one. Replicated arrays
    are already whole on every device and gather nothing; PRNG keys keep an identity program of their own."""
    whole: list[Any] = [None] * len(arrays)
    together: dict[tuple, list[int]] = {}
    for index, array in enumerate(arrays):
        if array.sharding.is_fully_replicated:
            whole[index] = array.addressable_data(0)
        elif jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
            replicated = NamedSharding(array.sharding.mesh, PartitionSpec())
            whole[index] = jax.jit(_identity, out_shardings=replicated)(array).addressable_data(0)
        else:
            together.setdefault((array.dtype, array.shape[0], array.sharding), []).append(index)
    for (_, _, sharding), indices in together.items():
        replicated = NamedSharding(sharding.mesh, PartitionSpec())
        side_by_side = jax.jit(_side_by_side, out_shardings=replicated)([arrays[index] for index in indices])
        host = np.asarray(side_by_side.addressable_data(0))
        start = 0
        for index in indices:
            width = int(np.prod(arrays[index].shape[1:], dtype=np.int64))
            whole[index] = host[:, start:start + width].reshape(arrays[index].shape)
            start += width
    return whole


def _side_by_side(arrays: list[jax.Array]) -> jax.Array:
    """[rows, Σ columns]: each array's trailing axes flattened, then concatenated (module-level, like `_identity`,
    so that `jax.jit` reuses its program for lists of the same shapes and shardings)."""
    return jnp.concatenate([array.reshape(array.shape[0], -1) for array in arrays], axis=1)


def _identity(tree: Any) -> Any:
    return tree  # module-level, so that `jax.jit` reuses its program for trees of the same shapes and shardings


def batch_constraint(mesh: Mesh | None):
    """`x [batch, ...] → x` split on the data axis, for use inside a function vmapped with
    `spmd_axis_name=MEMBER_AXIS` (the member axis is then prepended to the spec); identity without a mesh."""
    if mesh is None or mesh.shape[DATA_AXIS] == 1:
        return lambda x: x
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return lambda x: jax.lax.with_sharding_constraint(x, sharding)
