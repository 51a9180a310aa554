"""The one Orbax wrapper: synchronous, kill-safe save and restore of training-state pytrees.

On a local disk Orbax 0.12.8 writes step N into `<directory>/N.orbax-checkpoint-tmp` (no unique suffix) and renames
it to `N` only once it is complete, so a run killed at any moment leaves finished step directories plus at most one
tmp directory, which Orbax never lists as a step. `save` deletes such leftovers before writing (Orbax alone would
only replace one when the same step is saved again, with a warning, and keep the others forever).

Several processes (a multi-host job): Orbax's own multi-process mode synchronises every step of a save through
barriers that are gloo collectives without a timeout, entered from Orbax's worker threads, so one process that falls
out of step hangs the others for ever. Here each process uses Orbax as if it were alone: `save` gathers the state to
host copies on every process (one collective, in the same place on each) and process 0 writes them; `restore` reads
on every process and lays each leaf out as the target's sharding. The checkpoint directory must be on a file system
all hosts share, as the run directories are.

A step is written packed: every leaf of one dtype raveled into one array, and in the step's metadata the list of
the leaves' paths, dtypes and shapes. Orbax spends milliseconds of Python on each array it saves or restores (a
TensorStore spec, futures and an event loop per array), and a training state has hundreds of small leaves (every
parameter, BatchNorm statistic and Adam moment); packed, a save or restore costs about a tenth
(benchmarks/README.md, "Checkpoints"), whatever the number of members. A run saves its group's state every epoch
and each member's weights at its end. Steps of the earlier layout (one array per leaf) are still read.

A step that cannot be read (a truncated file, emptied metadata) is skipped by `restore` with one warning naming it,
in favour of the newest intact step; when none is intact, `DamagedCheckpointError` names the directory to delete.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from ssr_jax import parallel, workdir as workdir_lib

class DamagedCheckpointError(workdir_lib.WorkdirError):
    """No checkpoint step in a directory can be read; the message names the directory to delete."""


class _UnreadableStep(Exception):
    def __init__(self, step: int, error: BaseException):
        reason = (str(error).strip().splitlines() or [""])[0].split(" See full TensorStore details")[0]
        super().__init__(f"step {step} is unreadable ({type(error).__name__}: {reason[:160]})")


# Orbax's name for the single unnamed item (checkpoint_manager.DEFAULT_ITEM_NAME): the packed arrays, or in a step of
# the earlier layout every leaf. Registering the handlers up front lets a fresh manager read a step's metadata before
# any restore; without it the metadata is None.
_ITEM = "default"
# The packed step's leaves, [{"path", "dtype", "shape", "key"}] in the order they were packed: in the step's custom
# metadata (its _CHECKPOINT_METADATA file), which Orbax writes and renames into place with the arrays.
_LAYOUT = "ssr_jax_packed_leaves"


def _manager(directory, *, keep: int | None = None) -> ocp.CheckpointManager:
    """A synchronous manager. Writers pass `keep`; readers don't, so they neither create nor clean anything."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add(_ITEM, ocp.args.StandardSave)
    registry.add(_ITEM, ocp.args.StandardRestore)
    writer = keep is not None
    if writer:  # Orbax's own `create` is refused together with `active_processes` (see _this_process_only)
        os.makedirs(directory, exist_ok=True)
    options = ocp.CheckpointManagerOptions(
        create=False,
        cleanup_tmp_directories=writer,
        enable_async_checkpointing=False,  # save() returns only once the step is finalised; no thread outlives it
        # max_to_keep is documented as deprecated in 0.12.x; LatestN is the same rule under the current API.
        preservation_policy=ocp.checkpoint_managers.LatestN(n=keep) if writer else None,
        multiprocessing_options=_this_process_only(),
    )
    # Absolute: Orbax refuses to restore from a relative path ("Checkpoint path should be absolute"), which a
    # command given `runs/x` would otherwise report as a damaged checkpoint.
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, handler_registry=registry)


def _this_process_only() -> ocp.options.MultiprocessingOptions:
    """Orbax options under which this process neither waits for nor writes on behalf of any other."""
    if jax.process_count() == 1:
        return ocp.options.MultiprocessingOptions()
    me = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})


def save(directory: str | os.PathLike, step: int, state: Any, *, keep: int = 2) -> None:
    """Saves `state` (pytree of arrays) as checkpoint `step` under `directory`, synchronously (returns when on disk
    and finalised), keeps the newest `keep` checkpoints.

    Raises orbax's StepAlreadyExistsError (a ValueError) if `step` is already saved: overwriting in place would
    leave a window with no complete copy of that step.
    """
    if keep < 1:  # LatestN(0) would delete the checkpoint just written
        raise ValueError(f"keep must be >= 1, got {keep}")
    if jax.process_count() > 1:
        state = parallel.fetch(state)  # every process takes part in the gather ...
        if not parallel.is_writer():  # ... and process 0 alone writes
            return
    packed, layout = _pack(state)
    try:
        with _manager(directory, keep=keep) as manager, _quiet_worker_logs():
            # force: bypass the save-interval policy, which would silently skip steps; the caller decides when to save.
            manager.save(step, args=ocp.args.StandardSave(packed), custom_metadata={_LAYOUT: layout}, force=True)
    except OSError as error:
        raise workdir_lib.write_error(os.path.join(directory, str(step)), error) from None
    except ValueError as error:  # TensorStore reports a full disk as a ValueError ("RESOURCE_EXHAUSTED ...")
        if "No space left on device" not in str(error):
            raise
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise workdir_lib.write_error(f"checkpoint {os.path.join(directory, str(step))}", full) from None


def _is_key(leaf: Any) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _pack(state: Any) -> tuple[dict[str, np.ndarray], list[dict]]:
    """({dtype name: every leaf of that dtype raveled and concatenated}, the layout that unpacks them). A typed PRNG
    key is stored as its key data, with its implementation's name."""
    flat = ocp.tree.to_flat_dict(state, sep="/")
    keys = {path: str(jax.random.key_impl(leaf)) for path, leaf in flat.items() if _is_key(leaf)}
    hosts = jax.device_get([jax.random.key_data(leaf) if path in keys else leaf for path, leaf in flat.items()])
    layout, by_dtype = [], {}
    for path, host in zip(flat, map(np.asarray, hosts)):
        layout.append({"path": path, "dtype": host.dtype.name, "shape": list(host.shape), "key": keys.get(path)})
        by_dtype.setdefault(host.dtype.name, []).append(host.ravel())
    return {name: np.concatenate(parts) for name, parts in by_dtype.items()}, layout


def _unpack(packed: dict[str, np.ndarray], layout: list[dict]) -> dict[str, tuple[np.ndarray, str | None]]:
    """{path: (host array, PRNG implementation or None)} from `_pack`'s output; `ValueError` when the arrays do not
    hold what the layout lists."""
    offsets = dict.fromkeys(packed, 0)
    unpacked = {}
    for leaf in layout:
        name, shape = leaf["dtype"], tuple(leaf["shape"])
        start, size = offsets[name], int(np.prod(shape, dtype=np.int64))
        unpacked[leaf["path"]] = packed[name][start:start + size].reshape(shape), leaf["key"]
        offsets[name] = start + size
    short = {name: (offset, packed[name].size) for name, offset in offsets.items() if offset != packed[name].size}
    if short:
        raise ValueError(f"the packed arrays do not hold the leaves their layout lists ({short})")
    return unpacked


@contextlib.contextmanager
def _quiet_worker_logs():
    """Orbax's worker threads log, with tracebacks, the error they also hand back to `save`, which raises it: one
    report (the caller's), not three."""
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.FATAL)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)


def latest_step(directory: str | os.PathLike) -> int | None:
    """Newest complete checkpoint step, None if there is none (directory missing or empty)."""
    if not os.path.isdir(directory):
        return None
    with _manager(directory) as manager:
        return manager.latest_step()


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    # Orbax places a leaf without a sharding where it was saved and fails when that device is missing (e.g. saved on
    # GPU, restored on CPU: "Topology mismatch"), so such leaves go to the default device.
    # A leaf spread over other processes' devices is read here whole, then placed (see `restore`).
    sharding = getattr(leaf, "sharding", None)
    if sharding is None or not sharding.is_fully_addressable:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)


def _place_like(restored: jax.Array, target: Any) -> jax.Array:
    """`restored` with the target leaf's layout where that spans several processes (a multi-host mesh)."""
    sharding = getattr(target, "sharding", None)
    if sharding is None or sharding.is_fully_addressable:
        return restored
    return parallel.place(restored, sharding)


def _stored_shape(leaf: jax.ShapeDtypeStruct) -> tuple[int, ...]:
    # A typed PRNG key is stored as its key data, which has the key's trailing shape (e.g. (2,) for threefry).
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.eval_shape(jax.random.key_data, leaf).shape
    return tuple(leaf.shape)


def _mismatch(saved: dict, wanted: dict) -> str | None:
    """First difference between the saved {"a/b/c": shape} and the target's {"a/b/c": leaf}, in the target's leaf
    order; None if they agree."""
    for path, leaf in wanted.items():
        if path not in saved:
            return f"{path}: missing from the checkpoint"
        if saved[path] != _stored_shape(leaf):
            return f"{path}: checkpoint has shape {saved[path]}, model expects {_stored_shape(leaf)}"
    extra = sorted(saved.keys() - wanted.keys())
    return f"{extra[0]}: in the checkpoint but not in the model" if extra else None


def _steps(directory) -> list[int]:
    """The complete steps in `directory`, newest first ([] if there is no such directory)."""
    if not os.path.isdir(directory):
        return []
    with _manager(directory) as manager:
        return sorted(manager.all_steps(), reverse=True)


def _step_metadata(manager: ocp.CheckpointManager, step: int):
    """Orbax's metadata of `step`; `_UnreadableStep` when it cannot be read."""
    try:
        metadata = manager.metadata(step)
    except Exception as error:  # noqa: BLE001 — Orbax raises JSON, key and plain errors for damaged files
        raise _UnreadableStep(step, error) from None
    if _layout(metadata) is None and metadata.item_metadata is None:
        raise _UnreadableStep(step, ValueError("no metadata"))
    return metadata


def _layout(metadata) -> list[dict] | None:
    """The packed leaves of a step (`_pack`), None for a step of the earlier layout (one saved array per leaf)."""
    return (metadata.custom_metadata or {}).get(_LAYOUT)


def _saved_shapes(step: int, metadata) -> dict[str, tuple[int, ...]]:
    """{"a/b/c": stored shape} of `step`, from its metadata (no array is read); `_UnreadableStep` when that cannot
    be read."""
    try:
        layout = _layout(metadata)
        if layout is not None:
            return {leaf["path"]: tuple(leaf["shape"]) for leaf in layout}
        tree = ocp.tree.to_flat_dict(metadata.item_metadata.tree, sep="/")
        return {path: tuple(leaf.shape) for path, leaf in tree.items()}
    except Exception as error:  # noqa: BLE001 — a malformed layout or tree
        raise _UnreadableStep(step, error) from None


def stored_shapes(directory: str | os.PathLike, step: int | None = None) -> dict[str, tuple[int, ...]]:
    """{"a/b/c": shape} of checkpoint `step` (default: the newest whose metadata reads), without reading any
    array."""
    problems = []
    for candidate in _steps(directory) if step is None else [step]:
        # A fresh manager per step: one that failed on a damaged step can fail on the next, intact one.
        with _manager(directory) as manager:
            try:
                return _saved_shapes(candidate, _step_metadata(manager, candidate))
            except _UnreadableStep as problem:
                problems.append(str(problem))
    if problems:
        raise _damaged(directory, problems)
    raise FileNotFoundError(f"no checkpoint in {os.fspath(directory)}")


def _damaged(directory, problems: list[str]) -> DamagedCheckpointError:
    return DamagedCheckpointError(f"no readable checkpoint in {os.fspath(directory)} ({'; '.join(problems)}); "
                                  f"delete {os.fspath(directory)} to start this run over")


def _restore_step(manager: ocp.CheckpointManager, directory, step: int, target: Any) -> Any:
    flat = ocp.tree.to_flat_dict(target, sep="/")
    metadata = _step_metadata(manager, step)
    # Compare first: Orbax's own shape error comes wrapped in TensorStore specs and asyncio tracebacks.
    problem = _mismatch(_saved_shapes(step, metadata), {path: _abstract(leaf) for path, leaf in flat.items()})
    if problem:
        raise ValueError(f"checkpoint {step} in {os.fspath(directory)} does not fit the target: {problem}")
    layout = _layout(metadata)
    if layout is None:
        return _restore_unpacked(manager, step, target)
    sizes: dict[str, int] = {}
    for leaf in layout:
        sizes[leaf["dtype"]] = sizes.get(leaf["dtype"], 0) + int(np.prod(leaf["shape"], dtype=np.int64))
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = {name: jax.ShapeDtypeStruct((size,), jnp.dtype(name), sharding=here) for name, size in sizes.items()}
    try:
        packed = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        saved = _unpack({name: np.asarray(array) for name, array in packed.items()}, layout)
    except Exception as error:  # noqa: BLE001 — a truncated array file surfaces as a bare TensorStore Exception
        raise _UnreadableStep(step, error) from None
    # to_flat_dict lists the leaves in jax.tree's order (tree_flatten_with_path), so they unflatten into the target.
    return jax.tree.unflatten(jax.tree.structure(target), [_placed(*saved[path], leaf) for path, leaf in flat.items()])


def _placed(host: np.ndarray, key: str | None, target: Any) -> jax.Array:
    """A saved leaf in the target leaf's dtype and layout (a typed PRNG key from its key data)."""
    sharding = getattr(target, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    if _is_key(target):
        data = _placed(host, None, jax.ShapeDtypeStruct(host.shape, host.dtype, sharding=sharding))
        return jax.random.wrap_key_data(data, impl=key) if key else jax.random.wrap_key_data(data)
    host = host.astype(target.dtype, copy=False)
    return jax.device_put(host, sharding) if sharding.is_fully_addressable else parallel.place(host, sharding)


def _restore_unpacked(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
    """A step of the earlier layout, one saved array per leaf."""
    abstract = jax.tree.map(_abstract, target)
    try:
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # noqa: BLE001 — a truncated array file surfaces as a bare TensorStore Exception
        raise _UnreadableStep(step, error) from None
    return jax.tree.map(_place_like, restored, target)


def restore(directory: str | os.PathLike, target: Any, step: int | None = None) -> Any:
    """Restores checkpoint `step` (default: the newest intact one) into the structure, shapes and dtypes of `target`
    (a pytree of arrays or of jax.ShapeDtypeStruct, e.g. from jax.eval_shape). Returns a pytree of the same
    structure as target with jax arrays. Raises FileNotFoundError with a clear message if no checkpoint exists, and a
    ValueError naming the first differing leaf path (e.g. "params/stage_1/delta/kernel: checkpoint has shape
    (161, 1), model expects (91, 1)") when the checkpoint does not match the target structure/shape.

    A newer step that cannot be read is skipped with one warning on stderr naming it; `DamagedCheckpointError` when
    no step (or the requested one) can be read. Dtypes are not checked: each leaf is cast to the target's dtype.
    """
    steps, problems = _steps(directory), []
    for candidate in steps if step is None else [step] if step in steps else []:
        with _manager(directory) as manager:  # fresh per step, as in `stored_shapes`
            try:
                restored = _restore_step(manager, directory, candidate, target)
            except _UnreadableStep as problem:
                problems.append(str(problem))
                continue
        for problem in problems:
            print(f"warning: checkpoint {os.fspath(directory)}: {problem}; using step {candidate}", file=sys.stderr,
                  flush=True)
        return restored
    if problems:
        raise _damaged(directory, problems)
    wanted = "no checkpoint" if step is None else f"no checkpoint {step}"
    raise FileNotFoundError(f"{wanted} to restore in {os.fspath(directory)} (complete steps: {sorted(steps)})")


def drop_steps_after(directory: str | os.PathLike, step: int) -> None:
    """Deletes the steps newer than `step` (unreadable ones that `restore` skipped), so that training on from
    `step` can save them again."""
    for candidate in _steps(directory):
        if candidate > step:
            shutil.rmtree(os.path.join(directory, str(candidate)))
