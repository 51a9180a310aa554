"""Loading, overriding and recording experiment configs (ml_collections `ConfigDict`s from `get_config(arg)`), and
checking the sections no other layer owns (train, optim, parallel).

It imports nothing of the project: each layer checks its own section (`ssr_jax.models.validate_config`,
`ssr_jax.data.validate_config`) and `ssr_jax.validation.validate` runs them all, before anything is compiled. Each
failure is one `ConfigError` line that names the field and the fix.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import os
import pathlib
import traceback
from typing import Any, Callable, Mapping, Sequence

import ml_collections


class ConfigError(ValueError):
    """A config key or value that cannot work; the message names the field and how to fix it."""


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """big_vision-style `get_config` argument: "smoke,epochs=3" → {smoke: True, epochs: 3} over `defaults`."""
    values = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        name, _, raw = item.partition("=")
        if name not in defaults:
            raise ConfigError(f"unknown config argument {name!r}; known: {', '.join(sorted(defaults))}")
        if not raw:
            values[name] = True
            continue
        try:
            values[name] = type(defaults[name])(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            values[name] = raw
    return ml_collections.ConfigDict(values)


def parse_overrides(items: Sequence[str], *, flag: str = "--set",
                    example: str = "train.eval_batch_size=100") -> dict[str, Any]:
    """`["model.stages=(5,5,5)", "train.epochs=3", "data.name=morph2"]` → dotted-key overrides (Python literals,
    else strings; lists become tuples). Keys and values are checked later, by `apply_overrides` and `validate`
    (or, for `--job`, by submitit)."""
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: use key=value, e.g. {flag} {example}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        overrides[key] = tuple(value) if isinstance(value, list) else value
    return overrides


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`path/to/config.py[:arg]` → `get_config(arg)`, as `ml_collections.config_flags` does."""
    path, _, arg = spec.partition(":")
    module = load_module(path, what="config file", example="--config configs/ssrnet.py")
    return call_user(path, module.get_config, *([arg] if arg else []), returns=ml_collections.ConfigDict,
                     what="get_config")


def load_module(path: str, *, what: str, example: str):
    """Imports a Python file (a config or an experiment) by path; a missing file, or one that fails to import, is a
    `ConfigError` (`user_code_error`)."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} {path} does not exist; pass e.g. {example}")
    module_spec = importlib.util.spec_from_file_location(f"ssr_jax_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    call_user(path, module_spec.loader.exec_module, module)
    return module


def user_code_error(error: BaseException, path: str | os.PathLike) -> str | None:
    """The line naming where the user's own file `path` failed — "path, line N: ZeroDivisionError: division by
    zero" — from its innermost frame in `error`'s traceback (or a syntax error's position in it); None when the
    error did not arise in that file (a framework error keeps its own handling)."""
    file = os.path.realpath(path)
    while error is not None:  # a flag parser may re-raise the user's error as the cause of its own
        if isinstance(error, SyntaxError) and error.filename and os.path.realpath(error.filename) == file:
            return f"{path}, line {error.lineno}: {type(error).__name__}: {error.msg}"
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
                 if os.path.realpath(frame.filename) == file]
        if lines:
            return f"{path}, line {lines[-1]}: {type(error).__name__}: {error}"
        error = error.__cause__ or error.__context__
    return None


def call_user(path: str | os.PathLike, function: Callable, *args, returns: type | tuple[type, ...] | None = None,
              what: str = ""):
    """`function(*args)`, code of the user's file `path`; an exception raised in that file becomes a one-line
    `ConfigError` (`user_code_error`), and a result that is not a `returns` one names `what` and the type."""
    try:
        result = function(*args)
    except Exception as error:  # noqa: BLE001 -- the user's code may raise anything; others re-raise below
        line = user_code_error(error, path)
        if line is None:
            raise
        raise ConfigError(line) from None
    if returns is not None and not isinstance(result, returns):
        expected = " or ".join(kind.__name__ for kind in (returns if isinstance(returns, tuple) else (returns,)))
        raise ConfigError(f"{path}: {what} returned {type(result).__name__} {_clip(result)}; it must return a "
                          f"{expected}")
    return result


def _clip(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """Copy of `config` with dotted-key overrides ({"model.stages": (5, 5, 5)}); unknown keys are an error."""
    config = ml_collections.ConfigDict(config.to_dict())
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        for depth, name in enumerate(parents):
            if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
                raise ConfigError(f"unknown config key {'.'.join(parents[:depth + 1])!r} (in override {dotted!r})")
            node = node[name]
        if leaf not in node:
            known = ", ".join(sorted(node.keys()))
            raise ConfigError(f"unknown config key {dotted!r}; keys here are: {known}")
        current = node[leaf]
        if isinstance(current, tuple) and not isinstance(value, tuple):
            value = tuple(value) if isinstance(value, list) else (value,)
        try:
            if isinstance(value, str) and isinstance(current, (int, float)) and not isinstance(current, bool):
                value = type(current)(value)  # "inf", "1e-3" as `--config.x=` reads them (`--set` gave a string)
            node[leaf] = value
        except (TypeError, ValueError):  # ConfigDict keeps a field's type, as `--config.x=value` does
            raise ConfigError(f"{dotted}={value!r}: must be of type {type(current).__name__}, like its default "
                              f"{current!r}") from None
    return config


def fail(field: str, value: Any, fix: str) -> None:
    """Raises the one-line `ConfigError` every check uses: "field=value: fix"."""
    raise ConfigError(f"{field}={value!r}: {fix}")


def validate_training(config: ml_collections.ConfigDict) -> None:
    """Checks the train, optim and parallel sections."""
    train, optim = config.train, config.optim
    for name in ("batch_size", "epochs", "eval_batch_size", "eval_images_at_once", "checkpoint_every"):
        if not (isinstance(train[name], int) and train[name] >= 1):
            fail(f"train.{name}", train[name], "must be a positive integer")
    if train.eval_batch_size > train.eval_images_at_once:  # one evaluation batch's activations are the footprint
        fail("train.eval_batch_size", train.eval_batch_size, f"more images than train.eval_images_at_once="
             f"{train.eval_images_at_once}, the most evaluated at once; lower it (the reference's is 500), or raise "
             "both")
    if not 0 < optim.learning_rate < math.inf:
        fail("optim.learning_rate", optim.learning_rate, "must be positive and finite (the reference uses 1e-3)")
    if not all(0.0 < f < 1.0 for f in optim.decay_fractions):
        fail("optim.decay_fractions", optim.decay_fractions, "each must lie in (0, 1), e.g. (1/3, 2/3)")
    for name in ("members", "data"):
        if not (isinstance(config.parallel[name], int) and config.parallel[name] >= 1):
            fail(f"parallel.{name}", config.parallel[name], "a number of devices, at least 1")
    if train.batch_size % config.parallel.data:
        fail("train.batch_size", train.batch_size, f"must split evenly over parallel.data="
             f"{config.parallel.data} devices")
    if config.parallel.shard_data:
        if not isinstance(config.parallel.shard_data, bool):
            fail("parallel.shard_data", config.parallel.shard_data, "True or False")
        if train.eval_batch_size % config.parallel.data:
            fail("train.eval_batch_size", train.eval_batch_size, f"must split evenly over parallel.data="
                 f"{config.parallel.data} devices when parallel.shard_data is on")
        if config.data.device_chunk:
            fail("parallel.shard_data", True, "cannot be combined with data.device_chunk (chunks are sent to "
                 "every device whole); use one of the two")


def jsonable(value):
    """Nested dicts, lists and tuples as JSON will hold them (tuples become lists)."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def to_json(config: ml_collections.ConfigDict) -> dict:
    """The config as JSON-ready nested dicts."""
    return jsonable(config.to_dict())


def from_json(record: dict, defaults: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """Inverse of `to_json`: every list in a recorded config was a tuple (stages, decay fractions). Keys of
    `defaults` that the record lacks (it predates them, `missing_keys`) take their default values."""
    def convert(value):
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, list):
            return tuple(convert(item) for item in value)
        return value

    def merge(default, recorded):
        if isinstance(default, dict) and isinstance(recorded, dict):
            return {**default, **{key: merge(default.get(key), item) for key, item in recorded.items()}}
        return recorded

    recorded = convert(record)
    return ml_collections.ConfigDict(merge(defaults.to_dict(), recorded) if defaults is not None else recorded)


def missing_keys(record: dict, defaults: ml_collections.ConfigDict) -> list[str]:
    """The dotted keys of `defaults` that a recorded config lacks."""
    def walk(default, recorded, prefix):
        for key, value in default.items():
            if key not in recorded:
                yield prefix + key
            elif isinstance(value, dict) and isinstance(recorded[key], dict):
                yield from walk(value, recorded[key], f"{prefix}{key}.")

    return list(walk(defaults.to_dict(), record, ""))


def differences(base: ml_collections.ConfigDict, other: ml_collections.ConfigDict) -> dict[str, Any]:
    """Dotted-key overrides that turn `base` into `other` (e.g. SSR-Net's config into DEX's)."""
    def flatten(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, ml_collections.ConfigDict):
                yield from flatten(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    base_values = dict(flatten(base))
    return {key: value for key, value in flatten(other) if base_values.get(key) != value}
