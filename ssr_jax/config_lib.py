"""Loading, overriding and validating experiment configs (ml_collections `ConfigDict`s from `get_config(arg)`).

Every check here runs before anything is compiled, and each failure is one line that names the field and the fix.
"""
from __future__ import annotations

import ast
import importlib.util
import pathlib
from typing import Any, Mapping, Sequence

import ml_collections

from ssr_jax.data import PREPARED_DATASETS, PREPARED_IMAGE_SIZE, augment
from ssr_jax.models import COLOUR_ORDERS, COMPUTE_DTYPES, DIRECT_AGE_FAMILIES, INPUT_SCALES
from ssr_jax.models import FAMILIES
from ssr_jax.models.conv import CONV_IMPLEMENTATIONS

MAX_STAGES = 4
MIN_IMAGE_SIZE = 38
P_ACTIVATIONS = ("relu", "softmax", "linear")
DATASETS = ("synthetic", *PREPARED_DATASETS)
AGE_DISTRIBUTIONS = ("uniform", "morph")


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
        node[leaf] = value
    return config


def _fail(field: str, value: Any, fix: str) -> None:
    raise ConfigError(f"{field}={value!r}: {fix}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every value a run depends on; raises `ConfigError` on the first bad one."""
    model, data, train, optim = config.model, config.data, config.train, config.optim
    if model.family not in FAMILIES:
        _fail("model.family", model.family, f"must be one of {FAMILIES}")
    stages = model.stages
    if (
        not isinstance(stages, (tuple, list))
        or not 1 <= len(stages) <= MAX_STAGES
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in stages)
    ):
        _fail("model.stages", stages, f"needs 1 to {MAX_STAGES} positive integers, e.g. --config.model.stages=3,3,3")
    if model.family == "dex" and len(stages) != 1:
        _fail("model.stages", stages, "DEX has one softmax stage, e.g. --config.model.stages='(101,)'")
    if not model.get("mobilenet_alpha", 0.25) > 0:
        _fail("model.mobilenet_alpha", model.mobilenet_alpha, "the MobileNet width multiplier must be positive "
              "(Table 1: 0.25)")
    depth = model.get("densenet_depth", 19)
    if not (isinstance(depth, int) and depth >= 7 and (depth - 4) % 3 == 0):
        _fail("model.densenet_depth", depth, "needs depth = 3n + 4 with n >= 1 (the reference: 13 or 19)")
    if model.get("compute_dtype", "float32") not in COMPUTE_DTYPES:
        _fail("model.compute_dtype", model.compute_dtype, f"must be one of {tuple(COMPUTE_DTYPES)}")
    if model.get("compute_dtype", "float32") != "float32" and model.family in DIRECT_AGE_FAMILIES:
        _fail("model.compute_dtype", model.compute_dtype, "mixed precision is implemented for ssr, dex and "
              "regression; the baselines compute in float32")
    if model.family == "regression" and len(stages) != 1:
        _fail("model.stages", stages, "the regression head has one fusion stage (its width), e.g. '(101,)'")
    if not model.v > 0:
        _fail("model.v", model.v, "the age range V must be positive (the reference uses 101)")
    for name in ("lambda_local", "lambda_d"):
        if not 0.0 <= model[name] <= 1.0:
            _fail(f"model.{name}", model[name], "must lie in [0, 1] (0 switches the term off, 1 is the reference)")
    if model.p_activation not in P_ACTIVATIONS:
        _fail("model.p_activation", model.p_activation, f"must be one of {P_ACTIVATIONS}")
    if model.conv not in CONV_IMPLEMENTATIONS:
        _fail("model.conv", model.conv, f"must be one of {tuple(CONV_IMPLEMENTATIONS)}")
    if not 0.0 <= model.dropout_rate < 1.0:
        _fail("model.dropout_rate", model.dropout_rate, "must lie in [0, 1)")
    if data.name not in DATASETS:
        _fail("data.name", data.name, f"must be one of {DATASETS} (prepare a real one first: ssr-jax data prepare "
              "NAME --manual_dir DIR)")
    if data.name != "synthetic" and data.image_size != PREPARED_IMAGE_SIZE:
        _fail("data.image_size", data.image_size, f"prepared datasets are stored at {PREPARED_IMAGE_SIZE}×"
              f"{PREPARED_IMAGE_SIZE}, as the reference's; use {PREPARED_IMAGE_SIZE}")
    if data.get("colour_order", "BGR") not in COLOUR_ORDERS:
        _fail("data.colour_order", data.colour_order, f"must be one of {COLOUR_ORDERS} (the reference feeds BGR)")
    if data.get("input_scale", "raw") not in INPUT_SCALES:
        _fail("data.input_scale", data.input_scale, f"must be one of {tuple(INPUT_SCALES)} (the reference: raw)")
    if not (isinstance(data.get("cap", 0), int) and data.get("cap", 0) >= 0):
        _fail("data.cap", data.cap, "a number of examples per split (0: all)")
    if "parallel" in config:
        for name in ("members", "data"):
            if not (isinstance(config.parallel[name], int) and config.parallel[name] >= 1):
                _fail(f"parallel.{name}", config.parallel[name], "a number of devices, at least 1")
        if train.batch_size % config.parallel.data:
            _fail("train.batch_size", train.batch_size, f"must split evenly over parallel.data="
                  f"{config.parallel.data} devices")
        if config.parallel.get("shard_data", False):
            if not isinstance(config.parallel.shard_data, bool):
                _fail("parallel.shard_data", config.parallel.shard_data, "True or False")
            if train.eval_batch_size % config.parallel.data:
                _fail("train.eval_batch_size", train.eval_batch_size, f"must split evenly over parallel.data="
                      f"{config.parallel.data} devices when parallel.shard_data is on")
            if data.get("device_chunk", 0):
                _fail("parallel.shard_data", True, "cannot be combined with data.device_chunk (chunks are sent to "
                      "every device whole); use one of the two")
    chunk = data.get("device_chunk", 0)
    if not (isinstance(chunk, int) and (chunk == 0 or chunk >= train.batch_size)):
        _fail("data.device_chunk", chunk, f"0 (whole split on the device) or at least train.batch_size "
              f"({train.batch_size}) examples")
    try:
        augment.from_config(data.get("augment"))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"data.{error}; see configs/base.py for the reference's values") from None
    if data.age_distribution not in AGE_DISTRIBUTIONS:
        _fail("data.age_distribution", data.age_distribution, f"must be one of {AGE_DISTRIBUTIONS}")
    if not 0 <= data.age_min <= data.age_max <= 100:
        _fail("data.age_min/age_max", (data.age_min, data.age_max), "need 0 <= age_min <= age_max <= 100")
    if not data.image_size >= MIN_IMAGE_SIZE:
        _fail("data.image_size", data.image_size,
              f"the four 3×3 VALID convs and three poolings need at least {MIN_IMAGE_SIZE} pixels (reference: 64)")
    for name in ("num_train", "num_test"):
        if not data[name] >= 1:
            _fail(f"data.{name}", data[name], "needs at least one example")
    for name in ("batch_size", "epochs", "eval_batch_size", "eval_images_at_once", "checkpoint_every"):
        if not (isinstance(train.get(name, 1), int) and train.get(name, 1) >= 1):
            _fail(f"train.{name}", train[name], "must be a positive integer")
    if data.name == "synthetic" and train.batch_size > data.num_train:
        _fail("train.batch_size", train.batch_size,
              f"is larger than the training split ({data.num_train} examples); lower it or raise data.num_train")
    if not optim.learning_rate > 0:
        _fail("optim.learning_rate", optim.learning_rate, "must be positive (the reference uses 1e-3)")
    if not all(0.0 < f < 1.0 for f in optim.decay_fractions):
        _fail("optim.decay_fractions", optim.decay_fractions, "each must lie in (0, 1), e.g. (1/3, 2/3)")



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
