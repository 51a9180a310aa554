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
import pathlib
from typing import Any, Mapping, Sequence

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
    return module.get_config(arg or None) if arg else module.get_config()


def load_module(path: str, *, what: str, example: str):
    """Imports a Python file (a config or an experiment) by path; a missing file is a `ConfigError`."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} {path} does not exist; pass e.g. {example}")
    module_spec = importlib.util.spec_from_file_location(f"ssr_jax_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


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


def from_json(record: dict) -> ml_collections.ConfigDict:
    """Inverse of `to_json`: every list in a recorded config was a tuple (stages, decay fractions)."""
    def convert(value):
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, list):
            return tuple(convert(item) for item in value)
        return value

    return ml_collections.ConfigDict(convert(record))


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
