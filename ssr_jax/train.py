"""Training that stays on the device: `make_train(config, splits)` → pure single-member `init` / `train_epoch` /
`evaluate` (data as an argument), vmapped over members once; `run_epochs`, the one host loop over epochs; and
`train_members` / `train_and_evaluate(config, workdir)`, the resumable runs behind `ssr-jax train` and sweep groups
(each member's files are written by its `record.Recorder`).

The split's uint8 arrays are put on the device once; an epoch is one compiled `lax.scan` over shuffled batches.
Every random draw comes from a stream of the member's key (`stream`), folded with the epoch and step, so no RNG is
carried and a resumed run replays exactly. Everything that is only a value —
seed, λ_local, λ_d, learning rate — enters through `key` and the `hparams` pytree, never as a Python constant, so
a sweep group trains as one program (purejaxrl's `jit(vmap(train))`).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import math
import pathlib
import statistics
import sys
import time
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from ssr_jax import (checkpoint, config_lib, environment, parallel, saved_model, validation, workdir as workdir_lib,
                     xla_options)
from ssr_jax.record import Recorder, finite, read_summary, record_config
from ssr_jax.data import augment, has_validation, load_splits
from ssr_jax.data.chunks import HostChunks, Resident
from ssr_jax.evaluate import SUMS, by_age, evaluate_batches, pad_to_batches, predict_the_mean_mae
from ssr_jax.models import (abstract_variables, architecture, count_parameters, create_model, model_input,
                            predict_age, regularisation, training_loss)
from ssr_jax.models.conv import Kernels, kernels as resolve_kernels
from ssr_jax.state import (VALUE_FIELDS, TrainState, learning_rate_at, make_optimizer, program_signature,
                           stack_members, train_state_from_variables)
from ssr_jax.xla_options import COMPILE_SPEED_OPTIONS

Splits = tuple[dict[str, np.ndarray], ...]  # (train, test) or (train, test, val)
# The validation split's metrics in each epoch's row (as val_mae, …), the first the one that selects the epoch.
VALIDATION_METRICS = ("mae", "ca3", "ca5")


# ----------------------------------------------------------------------------------------------------------------
# make_train
# ----------------------------------------------------------------------------------------------------------------
def over_members(alone: Callable, together: Callable, in_axes=0, spmd_axis_name: str | None = None) -> Callable:
    """`jax.vmap(together, in_axes)` over the leading member axis; except that a group of one without a mesh calls
    `alone` on the member itself. The two are the same function of models built with different convolutions
    (`make_train`): alone, the run's own (a vmapped `lax.conv` with a batched kernel becomes a grouped convolution,
    which XLA:CPU runs several times slower); together, the ones that vmap into batched dots. Which one is taken is
    decided from the arguments' shapes, which are the group's size."""
    vmapped = jax.vmap(together, in_axes=in_axes, spmd_axis_name=spmd_axis_name)

    def call(*args):
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        mapped = [arg for arg, axis in zip(args, axes) if axis is not None]
        if spmd_axis_name is not None or {leaf.shape[0] for leaf in jax.tree.leaves(mapped)} != {1}:
            return vmapped(*args)
        member = [arg if axis is None else jax.tree.map(lambda leaf: leaf[0], arg) for arg, axis in zip(args, axes)]
        return jax.tree.map(lambda leaf: leaf[None], alone(*member))

    return call


# `init` runs once per run and is always compiled for compile speed (xla_options.COMPILE_SPEED_OPTIONS). So are a
# short run's training and evaluation programs: up to this many training images in all (epochs × images per epoch ×
# members), XLA's seconds of optimisation cost more than the slower code they save. On a 2-core CPU
# the two cross above this size for one member and for a vmapped group alike (benchmarks/README.md, "Short runs"):
# pipeline checks (`:smoke`), one-step comparisons and tiny sweeps compile this way, real runs never.
SHORT_RUN_IMAGES = 1_000


class LeastRecentlyUsed:
    """Values built on first request and kept for the next, at most `capacity` of them (the least recently used are
    dropped); `built` counts the builds (the other requests were hits)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._values: collections.OrderedDict = collections.OrderedDict()
        self.built = 0

    def get(self, key, build: Callable):
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        value = self._values[key] = build()
        self.built += 1
        if len(self._values) > self.capacity:
            self._values.popitem(last=False)
        return value


class ExecutableCache(LeastRecentlyUsed):
    """Compiled programs of this process, keyed by the lowered program's text, the argument signature, the compiler
    options and the devices.

    A CPU sweep trains its runs one after another (`sweep.default_max_members`), each with its own `Trainer`; runs
    that differ only in values (seed, λ, learning rate: arguments, never constants) lower to the same text, so the
    second and later runs skip XLA's compilation (seconds per program; `TRACED` spares them the tracing too). The
    text is the key, not the config, so two programs share an executable only when the compiler would be given the
    same input. The least recently used programs beyond `capacity` are dropped.
    """

    def __init__(self, capacity: int = 24):
        super().__init__(capacity)

    @property
    def compiled(self) -> int:
        """XLA compilations this cache asked for (the others were hits)."""
        return self.built

    def compile(self, lowered: jax.stages.Lowered, signature: tuple, options: dict, mesh: jax.sharding.Mesh | None):
        """`lowered.compile(options)`, or the executable compiled before from the same text for the same argument
        `signature` (tree structure, shapes, dtypes and weak types: the text does not show weak types, which an
        executable checks)."""
        devices = None if mesh is None else tuple(device.id for device in mesh.devices.flat)
        key = (hashlib.sha256(lowered.as_text().encode()).hexdigest(), signature, tuple(sorted(options.items())),
               devices)
        return self.get(key, lambda: lowered.compile(options))


EXECUTABLES = ExecutableCache()


def jit_members(pure: dict[str, Callable], together: dict[str, Callable], mesh: jax.sharding.Mesh | None,
                eval_members_at_once: int | None) -> dict[str, Callable]:
    """The jitted `init`, `train_epoch` and `evaluate` of a group: `pure` vmapped over members (`over_members`;
    `together` the same functions of the model that vmaps, see `Trainer`)."""
    # On a mesh, the vmapped member axis is the mesh's member axis (see ssr_jax.parallel).
    spmd_axis_name = parallel.MEMBER_AXIS if mesh is not None else None

    def vmap(name, in_axes=0):
        return over_members(pure[name], together[name], in_axes, spmd_axis_name)

    evaluate_together = vmap("evaluate", in_axes=(0, 0, None))

    def evaluate_members(state, hparams, data):
        # Without a mesh, a group larger than `eval_members_at_once` is evaluated in member chunks (lax.map over
        # vmapped chunks): the same numbers with a bounded footprint. On a mesh each device holds only its
        # members already.
        members = jax.tree.leaves(hparams)[0].shape[0]
        if mesh is not None or eval_members_at_once is None or members <= eval_members_at_once:
            return evaluate_together(state, hparams, data)
        # lax.map vmaps each chunk of members
        return jax.lax.map(lambda member: together["evaluate"](*member, data), (state, hparams),
                           batch_size=eval_members_at_once)

    return {
        "init": jax.jit(vmap("init")),
        "train_epoch": jax.jit(vmap("train_epoch", in_axes=(0, 0, 0, None)), donate_argnums=(0,)),
        "evaluate": jax.jit(evaluate_members),
    }


class TracedPrograms(LeastRecentlyUsed):
    """The jitted programs (`jit_members`) of this process's trainers, keyed by everything their pure functions are
    a function of: the config without its value fields (`state.program_signature`, as a sweep groups runs), the
    training split's size, image shape and dtype, the convolutions and the mesh.

    jax.jit keeps each function's traces, keyed by its arguments' shapes, but a new trainer's functions are new
    closures: every trainer traced its programs again (seconds per trainer on a CPU), though a CPU sweep trains its
    runs one after another, each with its own trainer, and runs that differ only in values trace to the same
    programs. A trainer whose key was seen takes the same jitted functions, so JAX's trace cache answers. The key is
    the one a vmapped group already relies on: one program serves every config of equal signature, the values
    entering as arguments (`hparams`, `keys`), never as constants. The least recently used beyond `capacity` are
    dropped.
    """

    def __init__(self, capacity: int = 16):
        super().__init__(capacity)

    @property
    def traced(self) -> int:
        """Program sets built (the others were reused)."""
        return self.built


TRACED = TracedPrograms()


class Trainer:
    """The single-member pure functions, vmapped over members once, compiled per input signature, and bound to
    device-resident data (or to `HostChunks` fed to the device chunk by chunk).

    The methods work on a leading *member* axis (a single run is a group of one): `keys` `[M]`, every `hparams`
    leaf `[M]`, every state leaf `[M, ...]`, every metric `[M]`.

      init(keys, hparams) -> TrainState
      train_epoch(state, keys, hparams, epoch) -> (state, {"train_loss"})   # `state` is donated
      evaluate(state, hparams[, split]) -> {"mae", "ca3", "ca5", "count",   # exact, over the whole test split
                                   "age_abs_error", "age_count"}            # [M, 10] (evaluate.AGE_GROUPS)
                                                                            # (or the validation split: "val")

    `jitted` (`jit_members`) holds them jitted: the single-member functions with the data as an explicit last
    argument (purejaxrl's `train`), of a model convolving with `kernels["alone"]`, and the same functions of a model
    convolving with `kernels["together"]`, which the vmapped programs of groups (more than one member, or any on a
    mesh) trace (`over_members`). Programs are compiled on the host, once per input signature (tree structure,
    shapes, dtypes), and kept in `programs`; `compiles(name)` counts them, with nothing counted inside traced code.
    """

    def __init__(self, jitted: dict[str, Callable], data: dict | HostChunks, *, kernels: dict[str, Kernels],
                 steps_per_epoch: int, images_per_epoch: int, mesh: jax.sharding.Mesh | None = None,
                 validation: bool = False, epochs: int | None = None):
        self.data, self.mesh, self.kernels = data, mesh, kernels
        self.epochs = epochs  # the run's length, for `compiler_options` (None: unknown, compiled as a long run)
        self.validation = validation  # the data has a validation split, padded as the test split (one program)
        self.steps_per_epoch, self.images_per_epoch = steps_per_epoch, images_per_epoch
        self._jitted = jitted  # `jit_members`: shared by every trainer of the same traced programs (`TRACED`)
        self.programs: dict[str, dict] = {name: {} for name in self._jitted}
        self._feed = data if isinstance(data, HostChunks) else Resident(data)

    def program(self, name: str, *args):
        """The compiled program of `name` for these arguments (arrays or `jax.ShapeDtypeStruct`s), compiled on
        first use — or taken from `EXECUTABLES` when another trainer in this process compiled the same program."""
        leaves, structure = jax.tree.flatten(args)
        signature = (structure, tuple((leaf.shape, leaf.dtype, getattr(leaf, "weak_type", False)) for leaf in leaves))
        programs = self.programs[name]
        if signature not in programs:
            hparams = args[1 if name in ("init", "evaluate") else 2]
            members = jax.tree.leaves(hparams)[0].shape[0]
            programs[signature] = EXECUTABLES.compile(self._jitted[name].lower(*args), signature,
                                                      self.compiler_options(name, members), self.mesh)
        return programs[signature]

    def compiler_options(self, name: str, members: int) -> dict:
        """XLA's options for program `name` of a group of `members`: `init`, and every program of a short run
        (`SHORT_RUN_IMAGES`), compiled for compile speed; the others as `xla_options` says for the backend."""
        if name == "init":
            return COMPILE_SPEED_OPTIONS
        options = xla_options.compiler_options()
        if self.epochs is not None and self.epochs * self.images_per_epoch * members <= SHORT_RUN_IMAGES:
            return {**options, **COMPILE_SPEED_OPTIONS}
        return options

    def kernels_of(self, members: int) -> Kernels:
        """The convolutions a group of `members` trains and evaluates with."""
        return self.kernels["together" if self.mesh is not None or members != 1 else "alone"]

    def compiles(self, name: str) -> int:
        """How many programs of `name` were compiled (one per input signature)."""
        return len(self.programs[name])

    def jaxpr_text(self, name: str, *args) -> str:
        """The jaxpr of `name` for these arguments (what the compiler is given)."""
        return str(jax.make_jaxpr(self._jitted[name])(*args))

    @property
    def chunked(self) -> bool:
        return isinstance(self.data, HostChunks)

    def init(self, keys, hparams) -> TrainState:
        """The members' initial state. It runs once per run, so it is compiled for compile speed rather than run
        speed (`COMPILE_SPEED_OPTIONS`)."""
        return self.program("init", keys, hparams)(keys, hparams)

    def compile(self, state: TrainState, keys: jax.Array, hparams: dict) -> float:
        """Compiles `train_epoch` and `evaluate` ahead of time; returns the seconds it took."""
        start = time.perf_counter()
        self.program("train_epoch", state, keys, hparams, self._feed.abstract("train"))
        self.program("evaluate", state, hparams, self._feed.abstract("test"))
        return time.perf_counter() - start

    def train_epoch(self, state, keys, hparams, epoch: int):
        """Trains `epoch` (1-based; it picks the chunks, the device keys come from the state's step)."""
        losses = []
        for chunk in self._feed.train_chunks(epoch - 1):  # dispatch is asynchronous: the next gather overlaps training
            state, metrics = self.program("train_epoch", state, keys, hparams, chunk)(state, keys, hparams, chunk)
            losses.append(metrics["train_loss"])
        return state, {"train_loss": jnp.mean(jnp.stack(losses), axis=0)}  # equal steps per chunk: exact mean

    def evaluate(self, state, hparams, split: str = "test"):
        parts = [self.program("evaluate", state, hparams, chunk)(state, hparams, chunk)
                 for chunk in self._feed.test_chunks(split)]
        if len(parts) == 1:
            return parts[0]
        parts = jax.tree.map(lambda *values: jnp.stack(values), *parts)  # [chunks, M]
        count = jnp.sum(parts["count"], axis=0)
        return {name: jnp.sum(parts[name], axis=0) if name in SUMS else
                jnp.sum(parts[name] * parts["count"], axis=0) / count for name in parts}


@dataclasses.dataclass(frozen=True)
class Epoch:
    """What `run_epochs` gives after each epoch: host copies of the metrics (`[M]` each) and the wall times."""

    epoch: int
    state: TrainState
    train_loss: np.ndarray
    metrics: dict[str, np.ndarray]  # mae, ca3, ca5, count [M]; age_abs_error, age_count [M, 10]; val_mae, val_ca3,
    #                                 val_ca5 [M] when the trainer has a validation split
    train_s: float  # the epoch's training, until its loss is on the host
    eval_s: float  # the evaluation after it


def run_epochs(trainer: Trainer, state: TrainState, keys: jax.Array, hparams: dict, *, first: int,
               last: int) -> Iterator[Epoch]:
    """The one host loop over epochs `first … last` (1-based): train, evaluate (the test split, and the validation
    split when there is one), yield. `ssr-jax train`, sweep groups, `ssr-jax bench` and the tests all train through
    it.

    The trainer's calls run under `jax.transfer_guard("disallow")`: the data, state, keys and hparams already live
    on the devices, so any implicit host↔device copy in the hot loop is a bug and raises; the two deliberate
    copies per epoch (the losses and the metrics, `parallel.fetch`) are explicit.
    """
    for epoch in range(first, last + 1):
        start = time.perf_counter()
        with jax.transfer_guard("disallow"):
            state, train_metrics = trainer.train_epoch(state, keys, hparams, epoch)
        train_loss = parallel.fetch(train_metrics["train_loss"])  # blocks until the epoch is done
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        with jax.transfer_guard("disallow"):
            metrics = trainer.evaluate(state, hparams)
            validation_metrics = trainer.evaluate(state, hparams, "val") if trainer.validation else {}
        metrics = parallel.fetch(metrics)
        metrics.update({f"val_{name}": value for name, value in parallel.fetch(validation_metrics).items()
                        if name in VALIDATION_METRICS})
        yield Epoch(epoch, state, train_loss, metrics, train_s, time.perf_counter() - start)


# Random streams of a member's key, one per purpose: a fold_in of the purpose's constant, then of the training
# call (shuffle) or the global step (dropout, augmentation), so no key is carried, a resumed run replays exactly,
# and no stream is another's parent — changing how one purpose draws (more augmentation draws, say) leaves the others'
# numbers as they were.
STREAMS = {"init": 0, "shuffle": 1, "dropout": 2, "augment": 3}


def stream(key: jax.Array, name: str) -> jax.Array:
    """The member key's stream for `name` (one of `STREAMS`)."""
    return jax.random.fold_in(key, STREAMS[name])


def make_train(config: ml_collections.ConfigDict, splits: Splits | None = None,
               mesh: jax.sharding.Mesh | None = None) -> Trainer:
    """Python-side set-up once (model, data on the device); returns the jitted training functions.

    `splits` (train, test[, val]) as `{"image": uint8 [N, H, W, 3], "age": int [N]}` host arrays; by default the
    dataset named by `config.data`. A validation split is evaluated after every epoch as the test split is. `mesh`
    (`ssr_jax.parallel.make_mesh`) spreads members and batches over devices; the
    caller places keys, hparams and state with `parallel.shard_members`.
    """
    train_split, test_split, *val_split = splits if splits is not None else load_splits(config.data)
    num_train = len(train_split["age"])
    batch_size, epochs = config.train.batch_size, config.train.epochs
    if batch_size > num_train:
        raise config_lib.ConfigError(
            f"train.batch_size={batch_size}: larger than the training split ({num_train} examples); lower it"
        )
    chunk = config.data.device_chunk
    chunk = chunk if 0 < chunk < num_train else 0  # a chunk as large as the split is the split
    # As Keras' steps_per_epoch = floor(N / batch); with chunks, floor(chunk / batch) per chunk.
    steps_per_call = (chunk or num_train) // batch_size
    steps_per_epoch = steps_per_call * (num_train // chunk if chunk else 1)
    image_shape = train_split["image"].shape[1:]
    augmentation = augment.from_config(config.data.augment)  # None: off
    shard_batch = parallel.batch_constraint(mesh)  # identity unless batches are split over a data axis
    shard_data = config.parallel.shard_data  # the dataset split over the data axis

    def readout(heads, hparams):
        return predict_age(config.model, heads, lambda_local=hparams["lambda_local"], lambda_d=hparams["lambda_d"])

    def optimizer(hparams):
        return make_optimizer(
            config.optim, hparams["learning_rate"], epochs=epochs, steps_per_epoch=steps_per_epoch
        )

    def pure_functions(model) -> dict[str, Callable]:
        """The single-member `init`, `train_epoch` and `evaluate` of `model`."""

        def init(key, hparams):
            variables = model.init(stream(key, "init"), jnp.zeros((1, *image_shape), jnp.float32), train=False)
            return train_state_from_variables(config, variables, hparams)

        def loss_fn(params, batch_stats, images, ages, dropout_key, hparams):
            heads, mutated = model.apply(
                {"params": params, "batch_stats": batch_stats}, model_input(images, config.data),
                train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"],
            )
            lambdas = dict(lambda_local=hparams["lambda_local"], lambda_d=hparams["lambda_d"])
            loss = training_loss(config.model, heads, ages, **lambdas) + regularisation(config.model, params)
            return loss, mutated["batch_stats"]

        def train_epoch(state, key, hparams, data):
            tx = optimizer(hparams)
            # One call trains on what `data` holds: the whole split, or one chunk of it (then the key is per chunk).
            shuffle_key = jax.random.fold_in(stream(key, "shuffle"), state.step // steps_per_call)
            # Drawn from the true count: a sharded split is padded to a multiple of the devices
            # (parallel.place_dataset).
            rows = num_train if shard_data else data["train"]["age"].shape[0]
            order = jax.random.permutation(shuffle_key, rows)[: steps_per_call * batch_size]
            dropout_key, augment_key = stream(key, "dropout"), stream(key, "augment")

            def step(state, batch_indices):
                images = shard_batch(data["train"]["image"][batch_indices])
                ages = shard_batch(data["train"]["age"][batch_indices])
                if augmentation is not None:  # on the device, per example
                    images = augment.augment_batch(jax.random.fold_in(augment_key, state.step), images, augmentation)
                (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                    state.params, state.batch_stats, images, ages, jax.random.fold_in(dropout_key, state.step), hparams
                )
                updates, opt_state = tx.update(grads, state.opt_state, state.params)
                new_state = TrainState(
                    step=state.step + 1,
                    params=optax.apply_updates(state.params, updates),
                    batch_stats=batch_stats,
                    opt_state=opt_state,
                )
                return new_state, loss

            state, losses = jax.lax.scan(step, state, order.reshape(steps_per_call, batch_size))
            return state, {"train_loss": jnp.mean(losses)}

        def evaluate(state, hparams, data):
            variables = {"params": state.params, "batch_stats": state.batch_stats}

            def predict(images):
                outputs = model.apply(variables, model_input(shard_batch(images), config.data), train=False)
                return readout(outputs, hparams)

            return evaluate_batches(predict, data["test"])

        return {"init": init, "train_epoch": train_epoch, "evaluate": evaluate}

    # The convolutions, chosen here once, before anything is traced, from the platform of the run's devices: a
    # member alone, and members vmapped together (conv.resolve); on a mesh members are always vmapped.
    platform = (mesh.devices.flat[0] if mesh is not None else jax.devices()[0]).platform
    together = resolve_kernels(config.model.conv, platform=platform, vmapped=True)
    kernels = {"alone": together if mesh is not None else resolve_kernels(config.model.conv, platform=platform),
               "together": together}
    eval_members_at_once = max(1, config.train.eval_images_at_once // config.train.eval_batch_size)

    def build() -> dict[str, Callable]:
        pure = pure_functions(create_model(config.model, kernels["alone"]))
        pure_together = pure if kernels["together"] == kernels["alone"] else \
            pure_functions(create_model(config.model, kernels["together"]))
        return jit_members(pure, pure_together, mesh, eval_members_at_once)

    # What the pure functions close over beyond the signature's fields: the training split's shape (its size sets
    # the permutation and the steps of a call), the platform and its convolutions, the mesh.
    traced_key = (repr(program_signature(config)), num_train, image_shape, str(train_split["image"].dtype),
                  platform, tuple(sorted(kernels.items())), mesh)
    jitted = TRACED.get(traced_key, build)

    eval_batch_size = config.train.eval_batch_size
    # Test and validation padded to the same batches: one evaluation program serves both.
    eval_batches = max(-(-len(split["age"]) // eval_batch_size) for split in (test_split, *val_split))
    host = {
        "train": {"image": train_split["image"], "age": train_split["age"].astype(np.float32)},
        **{name: pad_to_batches(split["image"], split["age"], eval_batch_size, eval_batches)
           for name, split in zip(("test", "val"), (test_split, *val_split))},
    }
    if chunk:
        data = HostChunks.of(host, chunk, eval_batch_size=config.train.eval_batch_size, seed=config.data.seed,
                             place=functools.partial(parallel.replicate, mesh=mesh))
    else:
        data = parallel.place_dataset(host, mesh, shard=shard_data)
    return Trainer(
        jitted,
        data,
        kernels=kernels,
        steps_per_epoch=steps_per_epoch,
        images_per_epoch=steps_per_epoch * batch_size,
        mesh=mesh,
        validation=bool(val_split),
        epochs=epochs,
    )


# ----------------------------------------------------------------------------------------------------------------
# Resumable runs: a group of members trained together, each with its own run directory
# ----------------------------------------------------------------------------------------------------------------
class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training; the message says from which epoch a rerun resumes."""


def resume_point(ckpt_dir: pathlib.Path) -> bool:
    """Whether a run resumes from `ckpt_dir` (a damaged newest step is skipped by the restore). A checkpoint with no
    readable step at all raises `DamagedCheckpointError` naming the directory to delete, before anything compiles."""
    if checkpoint.latest_step(ckpt_dir) is None:
        return False
    checkpoint.stored_shapes(ckpt_dir)
    return True


def epoch_row(config: ml_collections.ConfigDict, result: Epoch, member: int, trainer: Trainer) -> dict:
    """Member `member`'s metrics.jsonl row for the epoch `result`; the learning rate is the one its steps used."""
    members = len(result.train_loss)
    step = (result.epoch - 1) * trainer.steps_per_epoch  # the host knows the step: no device round trip
    return {
        "epoch": result.epoch,
        "train_loss": float(result.train_loss[member]),
        **{metric: float(result.metrics[metric][member]) for metric in ("mae", "ca3", "ca5")},
        **{f"val_{metric}": float(result.metrics[f"val_{metric}"][member])
           for metric in VALIDATION_METRICS if trainer.validation},
        "learning_rate": learning_rate_at(config, step, steps_per_epoch=trainer.steps_per_epoch),
        "images_per_s": trainer.images_per_epoch * members / result.train_s,
        "epoch_s": result.train_s,
        **by_age(result.metrics["age_abs_error"][member], result.metrics["age_count"][member]),
    }


def epoch_line(name: str, epoch: int, epochs: int, rows: list[dict], seconds: float, images: int) -> str:
    """The progress line of one epoch of a group: its loss, and its MAE (spread over members when several)."""
    maes = sorted(row["mae"] for row in rows)
    validating = bool(rows) and "val_mae" in rows[0]  # then "val" names the validation split, and the MAE is test's
    mae = f"{'test' if validating else 'val'} MAE {maes[0]:.3f}" if len(maes) == 1 else (
        f"{'test' if validating else 'val'} MAE min {maes[0]:.3f} median {maes[len(maes) // 2]:.3f} max {maes[-1]:.3f}")
    if validating and len(rows) == 1:
        mae += f"  validation MAE {rows[0]['val_mae']:.3f}"
    loss = sum(row["train_loss"] for row in rows) / len(rows)
    ca = f"  CA(3) {rows[0]['ca3']:.3f}  CA(5) {rows[0]['ca5']:.3f}" if len(rows) == 1 else ""
    return f"{name}: epoch {epoch}/{epochs}  loss {loss:.3f}  {mae}{ca}  {images / seconds:.0f} img/s"


def show(line: str, progress: tqdm.tqdm | None, members: int) -> None:
    """An epoch's progress line: on the bar (advanced by one per member) when one is shown, else printed."""
    if progress is not None and not progress.disable:
        progress.update(members)
        progress.set_postfix_str(line.split(": ", 1)[1], refresh=False)
    else:
        print(line, flush=True)


def selected_row(history: list[dict]) -> dict:
    """The row of the epoch a run with a validation split reports: the first with the lowest validation MAE (a
    non-finite one counts as infinite, so the first epoch stands until a finite one comes)."""
    return min(history, key=lambda row: (row["val_mae"] if finite(row["val_mae"]) else math.inf, row["epoch"]))


def summarise(record: Recorder, *, params: dict, splits: Splits, compile_s: float, wall_s: float,
              epoch_seconds: list[float], images_per_epoch: int, name: str, members: int, start_epoch: int) -> dict:
    """A member's summary.json: how it ended (status, final metrics), what it is (parameters, bytes) and what it
    cost (wall time of the whole run across resumes, compile, median training images/s of the group).

    With a validation split (`splits` = (train, test, val)) the test metrics are those of the selected epoch
    (`selected_row`), with `selected_epoch`, its `val_mae` and the last epoch's test MAE as `last_mae`; without
    one, those of the last epoch."""
    last = record.history[-1]
    validating = len(splits) == 3
    final = selected_row(record.history) if validating else last
    return {
        "status": "diverged" if record.diverged else "ok",
        **{metric: final[metric] for metric in ("mae", "ca3", "ca5")},
        # A row logged before the per-age metrics existed has none.
        **{metric: final.get(metric) for metric in ("mae_by_age", "count_by_age")},
        **({"selected_epoch": final["epoch"], "val_mae": final["val_mae"], "last_mae": last["mae"],
            "num_val": int(len(splits[2]["age"]))} if validating else {}),
        "epochs": last["epoch"],
        "params": params["total"],
        "trainable_params": params["trainable"],
        "model_bytes": params["bytes"],
        "mean_predictor_mae": predict_the_mean_mae(splits[0]["age"], splits[1]["age"]),
        "num_train": int(len(splits[0]["age"])),
        "num_test": int(len(splits[1]["age"])),
        "wall_s": wall_s,
        "compile_s": compile_s,
        "images_per_s": images_per_epoch * members / statistics.median(epoch_seconds) if epoch_seconds else None,
        "group": name,
        "group_members": members,
        "resumed_from_epoch": start_epoch,
    }


def checkpoint_tree(state: TrainState, selected: TrainState | None):
    """What a group checkpoints: its state, and beside it the selected epochs' states when it has a validation
    split."""
    return state if selected is None else {"state": state, "selected": selected}


@jax.jit
def keep_selected(improved: jax.Array, selected: TrainState, state: TrainState) -> TrainState:
    """Per member, `state` where `improved` `[M]` bool is true, else `selected`: the states of the selected epochs
    (new arrays, never aliases of `state`, whose buffers the next epoch donates)."""
    return jax.tree.map(lambda old, new: jnp.where(improved.reshape(-1, *(1,) * (new.ndim - 1)), new, old),
                        selected, state)


def save_member_weights(run_dir: pathlib.Path, member_state: TrainState, *, writer: bool) -> None:
    """A member of a group keeps its own weights (its last epoch's, or its selected epoch's with a validation split)
    in `run_dir/checkpoint`, loadable like any run's."""
    if writer:  # a redone run (its summary was unreadable) replaces the weights it saved before
        checkpoint.drop_steps_after(run_dir / "checkpoint", int(member_state.step) - 1)
    checkpoint.save(run_dir / "checkpoint", int(member_state.step), member_state)


def train_members(
    configs: list[ml_collections.ConfigDict],
    run_dirs: list[pathlib.Path],
    state_dir: pathlib.Path,
    *,
    splits: Splits | None = None,
    progress: tqdm.tqdm | None = None,
    name: str | None = None,
) -> list[dict]:
    """Trains configs that share one program (equal `program_signature`) as one vmapped group.

    The callers have recorded each member's config.json (`record.record_config`); each member gets metrics.jsonl,
    summary.json and a TensorBoard event file in its run directory. The stacked state is checkpointed every
    `train.checkpoint_every` epochs in `state_dir/checkpoint`, and a rerun resumes from it. A member whose training
    loss turns non-finite is recorded as `diverged`; the others train on. Returns the summaries in member order.
    `progress` is advanced by one per member and epoch.

    With a validation split (`splits` = (train, test, val)), each member's state at its selected epoch
    (`selected_row`) is kept beside the training state — on the devices, and in the same checkpoint, so a resumed
    run selects what an uninterrupted one does — and becomes the member's weights in `run_dir/checkpoint`; the state
    directory must then be another directory than the runs'.
    """
    if len({repr(program_signature(c)) for c in configs}) != 1:
        raise ValueError("train_members needs configs that differ only in " + ", ".join(VALUE_FIELDS))
    config, members, epochs = configs[0], len(configs), configs[0].train.epochs
    name = name or run_dirs[0].name
    environment.loaded_code()  # the code this process trains with, read now rather than when the run ends
    writer = parallel.is_writer()  # on several hosts only process 0 writes run files (and checkpoints)
    ckpt_dir = state_dir / "checkpoint"
    resuming = resume_point(ckpt_dir)
    # Checked and read before anything compiles; a resumed run has its weights in its checkpoint already.
    init_variables = saved_model.init_from(config) if config.init_from and not resuming else None

    # Input pipeline and compiled functions ---------------------------------------------------------------------
    splits = splits if splits is not None else load_splits(config.data)
    mesh = parallel.make_mesh(config.parallel.members, config.parallel.data)
    trainer = make_train(config, splits, mesh=mesh)
    if trainer.validation and state_dir in run_dirs:
        raise ValueError(f"{state_dir}: a group with a validation split keeps its training state apart from the "
                         "runs' selected weights; pass another state_dir")
    # Pad the member axis to a multiple of the mesh's member devices; the padding's results are never read.
    padded = configs + configs[-1:] * (parallel.padded_members(members, mesh) - members)
    keys, hparams = parallel.shard_members(stack_members(padded), mesh)
    state = parallel.shard_members(trainer.init(keys, hparams), mesh)
    compile_s = trainer.compile(state, keys, hparams)

    # Load checkpoint, or the pre-trained weights of a fresh run -----------------------------------------------
    if init_variables is not None:
        # Every member starts from the same weights with a fresh optimizer (the reference's fine-tuning chain).
        state = parallel.shard_members(
            jax.jit(jax.vmap(lambda hp: train_state_from_variables(config, init_variables, hp)))(hparams), mesh)
    selected = keep_selected(parallel.shard_members(np.ones(len(padded), bool), mesh), state, state) \
        if trainer.validation else None
    if resuming:
        restored = checkpoint.restore(ckpt_dir, checkpoint_tree(state, selected))
        state, selected = (restored["state"], restored["selected"]) if trainer.validation else (restored, None)
    start_step = int(parallel.fetch(state.step)[0])  # a collective on several hosts: every process fetches
    if resuming and writer:  # steps the restore skipped as unreadable are trained and saved again
        checkpoint.drop_steps_after(ckpt_dir, start_step)
    start_epoch = saved_epoch = start_step // trainer.steps_per_epoch
    records = [Recorder(run_dir, write=writer) for run_dir in run_dirs]
    for record in records:
        record.resume(start_epoch)

    # Train loop ------------------------------------------------------------------------------------------------
    # The run's wall time across resumes: what earlier invocations recorded up to the checkpoint, then this one's.
    earlier_s = [record.history[-1].get("elapsed_s", 0.0) if record.history else 0.0 for record in records]
    wall_start, epoch_seconds = time.perf_counter(), []
    first = start_epoch + 1 if not all(record.diverged for record in records) else epochs + 1
    try:
        for result in run_epochs(trainer, state, keys, hparams, first=first, last=epochs):
            state = result.state
            epoch_seconds.append(result.train_s)
            rows = []
            for member, record in enumerate(records):
                # Only a non-finite training loss is divergence: an infinite validation MAE can be honest early on,
                # when BatchNorm's running statistics (momentum 0.99) still lag and a Δ saturates at −1 (the
                # reference's 1/(1 + Δ) has no guard).
                if not record.diverged:
                    rows.append(epoch_row(configs[member], result, member, trainer))
                    rows[-1]["elapsed_s"] = earlier_s[member] + compile_s + time.perf_counter() - wall_start
                    record.epoch(rows[-1])
            if trainer.validation:
                improved = [member < members and selected_row(records[member].history)["epoch"] == result.epoch
                            for member in range(len(padded))]
                selected = keep_selected(parallel.shard_members(np.array(improved), mesh), selected, state)
            if result.epoch % config.train.checkpoint_every == 0 or result.epoch == epochs:
                checkpoint.save(ckpt_dir, result.epoch * trainer.steps_per_epoch, checkpoint_tree(state, selected))
                saved_epoch = result.epoch
            show(epoch_line(name, result.epoch, epochs, rows, result.train_s, trainer.images_per_epoch * members),
                 progress, members)
            if all(record.diverged for record in records):
                break
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: rerun the same command to resume from epoch {saved_epoch} (its checkpoint "
                          f"is in {ckpt_dir})" if saved_epoch else "interrupted before the first checkpoint: rerun "
                          "the same command to start over") from None

    # Summaries -------------------------------------------------------------------------------------------------
    this_invocation_s = compile_s + time.perf_counter() - wall_start
    params = count_parameters(abstract_variables(config.model, config.data.image_size))
    # What the group ran with, in every member's summary: its convolutions (and those of the CPU timing), its
    # devices, the machine, the code and the data (ssr_jax.environment).
    kernels = trainer.kernels_of(len(padded))
    conv = {"train": kernels.train, "evaluate": kernels.evaluate}
    if config.train.measure_inference:
        inference_kernels = resolve_kernels(config.model.conv, platform="cpu")
        conv["inference"] = inference_kernels.evaluate
    devices = list(mesh.devices.flat) if mesh is not None else jax.devices()[:1]
    where = environment.gather(conv=conv, dataset=environment.dataset_fingerprint(splits), devices=devices,
                               onednn_training_threads=kernels.threads if kernels.train == "onednn" else None)
    # One gather of the whole group to host memory, then NumPy slices per member: no per-member programs on arrays
    # that span hosts (eager indexing of such arrays hung a two-process run).
    summaries, host_state = [], parallel.fetch(selected if trainer.validation else state)
    for member, (record, run_dir) in enumerate(zip(records, run_dirs)):
        summary = summarise(record, params=params, splits=splits, compile_s=compile_s,
                            wall_s=earlier_s[member] + this_invocation_s,
                            epoch_seconds=epoch_seconds, images_per_epoch=trainer.images_per_epoch, name=name,
                            members=members, start_epoch=start_epoch)
        summary.update(architecture(configs[member].model), conv=conv, environment=where)
        member_state = jax.tree.map(lambda leaf: leaf[member], host_state)
        if run_dir != state_dir:
            save_member_weights(run_dir, member_state, writer=writer)
        if config.train.measure_inference:
            variables = {"params": member_state.params, "batch_stats": member_state.batch_stats}
            summary["inference_ms_per_image"] = saved_model.inference_ms(configs[member], variables,
                                                                          inference_kernels)
        record.summary(summary)
        summaries.append(summary)
    return summaries


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    overrides: dict | None = None,
    splits: Splits | None = None,
    progress: bool | None = None,
) -> dict:
    """Trains `config` in `workdir` (config.json, metrics.jsonl, summary.json, checkpoint/); returns the summary.

    A finished workdir is reported and left alone; an interrupted one resumes from its last checkpoint and ends
    with the numbers an uninterrupted run gives. `splits` replaces the dataset named by `config.data`. With a
    validation split, `checkpoint/` receives the selected epoch's weights when the run ends, and the training state
    is checkpointed in `training/checkpoint/` (`train_members`).
    """
    validation.validate(config)
    parallel.check_devices(config.parallel.members, config.parallel.data)
    workdir = workdir_lib.prepare(workdir)
    writer = parallel.is_writer()
    with workdir_lib.exclusive(workdir, what="ssr-jax train") if writer else contextlib.nullcontext():
        if writer:  # before the summary: a finished run of another config is refused like an unfinished one
            record_config(workdir, config, overrides)
        summary = read_summary(workdir)
        if summary is not None:
            mae = f"MAE {summary['mae']:.3f}" if finite(summary.get("mae")) else "no finite MAE"
            print(f"{workdir}: already finished ({summary['status']}, {mae}); nothing to do")
            return summary
        show_bar = sys.stderr.isatty() if progress is None else progress
        with tqdm.tqdm(total=config.train.epochs, desc=workdir.name, disable=not show_bar, leave=False) as bar:
            validating = len(splits) == 3 if splits is not None else has_validation(config.data)
            state_dir = workdir / "training" if validating else workdir
            (summary,) = train_members([config], [workdir], state_dir, splits=splits, progress=bar)
    return summary
