"""A model directory: `config.json` + `checkpoint/` (a `TrainState`), as every training run writes it.

Training runs, `convert-keras` and `init_from` all share this layout, so `load` serves predict, evaluate, inspect and
fine-tuning alike, whatever produced the weights; `make_apply` is the one inference function they all call.
"""
from __future__ import annotations

import os
import pathlib
import statistics
import sys
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from configs import base
from ssr_jax import checkpoint, config_lib, validation, workdir as workdir_lib
from ssr_jax.models import abstract_variables, create_model, model_input, predict_age, upgrade_recorded
from ssr_jax.models.conv import Kernels
from ssr_jax.state import hparams_from_config, train_state_from_variables


def save(directory: str | os.PathLike, config: ml_collections.ConfigDict, variables: dict,
         *, source: dict[str, Any] | None = None) -> pathlib.Path:
    """Writes `variables` (`{"params", "batch_stats"}`) as a step-0 model directory for `config`, into a new or
    empty `directory` only (`WorkdirError` otherwise: it may hold a run whose config and weights this would mix
    with)."""
    validation.validate(config)
    check_new_directory(directory)
    directory = workdir_lib.prepare(directory, flag="--out")
    record = {"config": config_lib.to_json(config), "overrides": {}, "source": source or {},
              **workdir_lib.provenance()}
    workdir_lib.write_json(directory / "config.json", record)
    state = train_state_from_variables(config, variables, hparams_from_config(config))
    checkpoint.save(directory / "checkpoint", 0, state)
    return directory


def check_new_directory(directory: str | os.PathLike) -> None:
    """`WorkdirError` unless `directory` is missing or an empty directory."""
    path = pathlib.Path(directory)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise workdir_lib.WorkdirError(f"{directory} exists and is not an empty directory; a model directory is "
                                       "written into a new or empty one: pass another --out")


def read_config(directory: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config a model directory was trained or converted with (no weights are read); keys added to the configs
    since it was written take their defaults (`configs.base`), so older model directories keep loading."""
    return _read_config(directory)[0]


def _read_config(directory: str | os.PathLike) -> tuple[ml_collections.ConfigDict, list[str]]:
    """(`read_config`'s config, the dotted keys its config.json predates)."""
    config_file = pathlib.Path(directory) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{directory} is not a model directory (no config.json); pass a training workdir or a convert-keras output"
        )
    try:
        return as_current(workdir_lib.read_json(config_file)["config"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise workdir_lib.WorkdirError(f"{config_file} is unreadable, so what {directory} holds cannot be told; "
                                       "restore it, or train or convert the model again") from None


def as_current(record: dict) -> tuple[ml_collections.ConfigDict, list[str]]:
    """A recorded config (config.json's "config") as this version reads it — `model.family` as backbone and head,
    keys it predates at their defaults (`configs.base`) — and those keys."""
    record, defaults = upgrade_recorded(record), base.get_config()
    return config_lib.from_json(record, defaults), config_lib.missing_keys(record, defaults)


def load(directory: str | os.PathLike) -> tuple[ml_collections.ConfigDict, dict]:
    """(config, `{"params", "batch_stats"}`) from the newest checkpoint of a run or converted model directory."""
    directory = pathlib.Path(directory)
    config, missing = _read_config(directory)
    if missing:  # said once per load, not at every read of the config
        print(f"note: {directory / 'config.json'} predates {', '.join(missing)}: read with the defaults",
              file=sys.stderr)
    abstract_state = jax.eval_shape(
        lambda variables: train_state_from_variables(config, variables, hparams_from_config(config)),
        abstract_variables(config.model, config.data.image_size),
    )
    # A training workdir checkpoints its state with the member axis of the engine (a run is a group of one).
    members = checkpoint.stored_shapes(directory / "checkpoint").get("step", ())
    if members and members != (1,):
        raise ValueError(f"{directory} holds a vmapped group of {members[0]} members; load one member's run "
                         "directory (DIR/runs/<run id>) instead")
    target = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct((1, *leaf.shape), leaf.dtype), abstract_state) \
        if members else abstract_state
    try:
        state = checkpoint.restore(directory / "checkpoint", target)
    except ValueError as error:  # the checkpoint's shapes are not those of the model config.json describes
        raise workdir_lib.WorkdirError(f"{directory}: its config.json does not describe its weights ({error}); "
                                       "restore the config.json written with them, or train or convert the model "
                                       "again") from None
    if members:
        state = jax.tree.map(lambda leaf: leaf[0], state)
    return config, {"params": state.params, "batch_stats": state.batch_stats}


def named_leaves(variables) -> list[tuple[str, Any]]:
    """[("params/x_stream/conv1/kernel", leaf), …] in tree order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(variables)
    return [("/".join(str(getattr(key, "key", key)) for key in path), leaf) for path, leaf in flat]


def _shapes(variables) -> dict[str, tuple[int, ...]]:
    return {path: tuple(leaf.shape) for path, leaf in named_leaves(variables)}


def architecture_difference(config: ml_collections.ConfigDict, directory: str | os.PathLike) -> str | None:
    """Why the weights in `directory` cannot start a run of `config` (the first differing parameter), or None.

    Compares abstract shapes only: nothing is loaded or compiled.
    """
    source = read_config(directory)
    want = _shapes(abstract_variables(config.model, config.data.image_size))
    have = _shapes(abstract_variables(source.model, source.data.image_size))
    for path, shape in want.items():
        if path not in have:
            return f"parameter {path} {shape} is not in {directory}"
        if have[path] != shape:
            return f"parameter {path} has shape {have[path]} in {directory}, this run needs {shape}"
    extra = [path for path in have if path not in want]
    return f"{directory} has parameter {extra[0]} {have[extra[0]]}, which this run does not" if extra else None


def init_from(config: ml_collections.ConfigDict) -> dict:
    """`{"params", "batch_stats"}` of the model directory `config.init_from`; a different architecture is a
    `ConfigError` naming the first differing parameter."""
    source = pathlib.Path(config.init_from)
    if not (source / "config.json").is_file():
        raise config_lib.ConfigError(f"init_from={str(source)!r}: not a model directory (no config.json); pass a "
                                     "training workdir, a sweep run directory or a convert-keras output")
    difference = architecture_difference(config, source)
    if difference:
        raise config_lib.ConfigError(f"init_from={str(source)!r}: architecture mismatch: {difference}")
    _, variables = load(source)
    broken = [path for path, leaf in named_leaves(variables) if not np.all(np.isfinite(leaf))]
    if broken:
        raise config_lib.ConfigError(f"init_from={str(source)!r}: its weights are not finite ({broken[0]} holds NaN "
                                     "or infinity: a diverged run?); start from another model directory")
    return variables


def evaluation_pass(config: ml_collections.ConfigDict, kernels: Kernels | None = None) -> Callable:
    """The pure `(variables, images uint8 [batch, H, W, 3] BGR) → (ages [batch], outputs)` of evaluation mode at the
    config's λ: `model_input`, the model (convolving with `kernels`, by default `model.conv` resolved for the default
    device: `create_model`), the head's readout. `make_apply` compiles it; `ssr_jax.export` translates it."""
    model = create_model(config.model, kernels)
    lambdas = dict(lambda_local=config.model.lambda_local, lambda_d=config.model.lambda_d)

    def forward(variables, images):
        outputs = model.apply(variables, model_input(images, config.data), train=False)
        return predict_age(config.model, outputs, **lambdas), outputs

    return forward


def make_apply(config: ml_collections.ConfigDict, *, heads: bool = False, kernels: Kernels | None = None) -> Callable:
    """Jitted `(variables, images uint8 [batch, H, W, 3]) → ages [batch]` at the config's λ, in evaluation mode;
    with `heads`, the model's raw heads instead (p, eta K × `[batch, s_k]`, delta K × `[batch]`).

    The variables are an argument, not a constant of the program: one compile serves any weights of this shape.
    `kernels`: as for `evaluation_pass`.
    """
    forward = evaluation_pass(config, kernels)
    return jax.jit(lambda variables, images: forward(variables, images)[1 if heads else 0])


def inference_ms(config: ml_collections.ConfigDict, variables: dict, kernels: Kernels, repeats: int = 50) -> float:
    """Median milliseconds to predict one image (batch 1, `make_apply`, compiled) on the host CPU (Table 1's
    "CPU inference"), convolving with `kernels` — the caller's choice for the CPU (`conv.kernels(…,
    platform="cpu")`), whatever the default device is."""
    apply = make_apply(config, kernels=kernels)
    size = config.data.image_size
    variables, image = jax.device_put((variables, np.zeros((1, size, size, 3), np.uint8)), jax.devices("cpu")[0])
    apply(variables, image).block_until_ready()  # compile
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        apply(variables, image).block_until_ready()
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds)
