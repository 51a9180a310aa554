"""oneDNN convolutions on XLA:CPU through `jax.ffi`: the library TF-Keras and PyTorch run their CPU convolutions in.

`onednn_conv` is a `conv_general_dilated` for `flax.linen.Conv` (NHWC/HWIO float32, any strides and padding) whose
forward pass, input gradient and kernel gradient are each one oneDNN primitive (`jax.custom_vjp`);
`conv_bias_act` is the evaluation-only forward with a per-channel bias and ReLU/tanh fused as oneDNN post-ops.

The handlers (`onednn_conv.cc`, next to this file) are compiled with the system's C++ compiler against the pinned
`onednn-cpu-gomp` wheels (library + headers, GNU OpenMP threads) and jaxlib's FFI headers, into
`$XDG_CACHE_HOME/ssr_jax/onednn/<hash>/` (~/.cache by default), keyed by the source, jaxlib and oneDNN versions; later
processes load the cached library. The build is an explicit step, never part of a trace: `ssr-jax build-kernels`,
or `unavailable()` when a run resolves its convolutions before tracing (`conv.kernels`), which prints a line while
it compiles. `unavailable()` says in one line why the handlers cannot be used (no compiler, wheels missing, not
x86-64 Linux, a failed build), and `model.conv="auto"` then keeps XLA's own convolutions; the traced functions
below only use handlers already loaded.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = pathlib.Path(__file__).with_name("onednn_conv.cc")
DISTRIBUTIONS = ("onednn-cpu-gomp", "onednn-devel-cpu-gomp")
_TARGETS = {"forward": "SsrOnednnConvForward", "forward_bias_act": "SsrOnednnConvForwardBiasAct",
            "backward_data": "SsrOnednnConvBackwardData", "backward_weights": "SsrOnednnConvBackwardWeights"}
ACTIVATIONS = {"linear": 0, "relu": 1, "tanh": 2}


def _cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "ssr_jax" / "onednn"


def _onednn_dirs() -> tuple[pathlib.Path, pathlib.Path, str]:
    """(directory of libdnnl.so.3, include directory, oneDNN wheel version) of the installed wheels."""
    library, headers = (importlib.metadata.distribution(name) for name in DISTRIBUTIONS)
    lib = next(f for f in library.files if f.name == "libdnnl.so.3")
    header = next(f for f in headers.files if f.as_posix().endswith("oneapi/dnnl/dnnl.hpp"))
    return (pathlib.Path(library.locate_file(lib)).parent, pathlib.Path(headers.locate_file(header)).parents[2],
            library.version)


def _target() -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """(the cached library's path, oneDNN's library directory, its include directory); raises `OSError` with the
    reason where the wheels cannot be used."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise OSError(f"the oneDNN wheels are for x86-64 Linux, not {platform.system()} {platform.machine()}")
    try:
        lib_dir, include_dir, version = _onednn_dirs()
    except (importlib.metadata.PackageNotFoundError, StopIteration, TypeError):
        raise OSError(f"the {' and '.join(DISTRIBUTIONS)} wheels are not installed (pip install -e .)") from None
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), jax.__version__.encode(), version.encode(),
                                     str(lib_dir).encode()])).hexdigest()[:16]
    return _cache_dir() / key / "libssr_onednn.so", lib_dir, include_dir


def _compiler() -> str:
    compiler = os.environ.get("CXX", "g++")
    if not shutil.which(compiler):
        raise OSError(f"no C++ compiler ({compiler}) on PATH to build {SOURCE.name}")
    return compiler


def cannot_exist() -> str | None:
    """Why the handlers cannot exist on this machine (not x86-64 Linux, the wheels missing, no C++ compiler and no
    library built before), in one line; None where they can — then a failed build is a bug. Builds nothing."""
    try:
        target, _, _ = _target()
        if not target.is_file():
            _compiler()
    except OSError as error:
        return str(error)
    return None


def _build() -> pathlib.Path:
    """The compiled handler library, built once per (source, jaxlib, oneDNN) into the cache, with a line on stderr
    while it compiles; raises with the reason."""
    target, lib_dir, include_dir = _target()
    if target.is_file():
        return target
    compiler = _compiler()
    print(f"building the oneDNN convolutions ({SOURCE.name}, once per jaxlib and oneDNN version) into {target.parent}",
          file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # built aside, renamed: parallel builds are safe
        built = pathlib.Path(tmp) / target.name
        command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{jax.ffi.include_dir()}",
                   f"-I{include_dir}", str(SOURCE), "-o", str(built), f"-L{lib_dir}", "-l:libdnnl.so.3",
                   f"-Wl,-rpath,{lib_dir}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode:
            error = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip())
            raise OSError(f"building {SOURCE.name} failed: {error[:300]}")
        os.replace(built, target)
    return target


_LOADED: list[pathlib.Path] = []  # the library whose handlers XLA:CPU has registered, once loaded


@functools.cache
def unavailable() -> str | None:
    """None once the handlers are built (here, if needed), loaded and registered with XLA:CPU; else the reason, in
    one line. Call it before tracing: the traced functions below refuse to build."""
    try:
        path = _build()
        library = ctypes.cdll.LoadLibrary(str(path))
    except (OSError, subprocess.SubprocessError) as error:
        return f"oneDNN convolutions unavailable: {error}"
    for name, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(f"ssr_onednn_{name}", jax.ffi.pycapsule(getattr(library, symbol)),
                                    platform="cpu")
    _LOADED.append(path)
    return None


def loaded() -> pathlib.Path | None:
    """The library whose handlers are registered in this process (None before `unavailable()` has loaded it)."""
    return _LOADED[-1] if _LOADED else None


def _require_loaded() -> None:
    """Inside a trace: the handlers must be registered already (`unavailable()` ran before tracing)."""
    if not _LOADED:
        raise RuntimeError("the oneDNN convolutions are not loaded: resolve model.conv before tracing "
                           "(ssr_jax.models.conv.kernels) or call ssr_jax.models.onednn.unavailable() first; "
                           "`ssr-jax build-kernels` builds them")


@functools.cache
def training_threads() -> int:
    """OpenMP threads for each oneDNN call of a differentiated convolution (its forward, backward-data and
    backward-weights): half the cores this process may use, at least 1; 0 (the library's default: all cores, or
    OMP_NUM_THREADS) when OMP_NUM_THREADS is set. Calls outside differentiation (evaluation) use the default.
    A run reads it once, with its convolutions (`conv.kernels`), and passes it to `onednn_conv`.

    A training step is where XLA:CPU runs independent operations concurrently on its own threads — SSR-Net's two
    streams, each with its convolutions and their gradients —, so a call that spreads over every core competes
    with them, so fewer threads per call train faster; evaluation, one large batch at a time, is faster with every
    core per call (measured in benchmarks/README.md)."""
    if "OMP_NUM_THREADS" in os.environ:
        return 0
    return max(1, len(os.sched_getaffinity(0)) // 2)


def _attributes(strides, padding, threads: int) -> dict:
    (top, bottom), (left, right) = padding
    return {name: np.int64(value) for name, value in zip(
        ("stride_h", "stride_w", "pad_top", "pad_bottom", "pad_left", "pad_right", "threads"),
        (*strides, top, bottom, left, right, threads))}


def _call(name: str, shape, *args, **attributes):
    # "sequential": under vmap (a group of members, each with its own kernel) one call per member, which is exact;
    # `model.conv="auto"` does not pick oneDNN for vmapped groups (`conv.resolve`).
    return jax.ffi.ffi_call(f"ssr_onednn_{name}", jax.ShapeDtypeStruct(shape, jnp.float32),
                            vmap_method="sequential")(*args, **attributes)


def _output_shape(lhs_shape, rhs_shape, strides, padding) -> tuple[int, int, int, int]:
    (batch, height, width, _), (kh, kw, _, c_out) = lhs_shape, rhs_shape
    (top, bottom), (left, right) = padding
    return (batch, (height + top + bottom - kh) // strides[0] + 1, (width + left + right - kw) // strides[1] + 1,
            c_out)


def _forward(lhs, rhs, strides, padding, threads: int):
    return _call("forward", _output_shape(lhs.shape, rhs.shape, strides, padding), lhs, rhs,
                 **_attributes(strides, padding, threads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(lhs, rhs, strides, padding, threads):
    return _forward(lhs, rhs, strides, padding, 0)  # not differentiated: evaluation, on every core


def _conv_forward(lhs, rhs, strides, padding, threads):
    return _forward(lhs, rhs, strides, padding, threads), (lhs, rhs)


def _conv_backward(strides, padding, threads, residuals, cotangent):
    lhs, rhs = residuals
    attributes = _attributes(strides, padding, threads)
    return (_call("backward_data", lhs.shape, cotangent, rhs, **attributes),
            _call("backward_weights", rhs.shape, lhs, cotangent, **attributes))


_conv.defvjp(_conv_forward, _conv_backward)


def explicit_padding(lhs_shape, kernel_shape, strides, padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """'VALID', 'SAME' (TensorFlow's split: the odd row/column at the end) or explicit pairs → ((top, bottom),
    (left, right))."""
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs_shape[1:3], kernel_shape[:2], strides, padding)
    return tuple(tuple(int(p) for p in pair) for pair in padding)


def onednn_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                feature_group_count=1, precision=None, preferred_element_type=None, *, training_threads: int = 0):
    """`lhs` `[batch, H, W, C_in]` float32 ⋆ `rhs` `[kh, kw, C_in, C_out]` float32 → `[batch, H', W', C_out]`: one
    oneDNN convolution forward, its gradients one oneDNN backward-data and one backward-weights primitive. Any
    strides and padding; dilations, groups, other layouts and dtypes are refused (`conv.onednn_or_patches` hands
    them elsewhere). `precision` is ignored: oneDNN computes in float32. `training_threads`: OpenMP threads of
    each call when differentiated (`training_threads()`; 0: the library's default); undifferentiated calls use
    the default."""
    nhwc_hwio = dimension_numbers is None or (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
                                              and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1))
    dilated = any(d is not None and tuple(d) != (1, 1) for d in (lhs_dilation, rhs_dilation))
    if (lhs.ndim != 4 or not nhwc_hwio or dilated or feature_group_count != 1
            or {lhs.dtype, rhs.dtype} != {jnp.dtype(jnp.float32)}
            or preferred_element_type not in (None, jnp.float32)):
        raise NotImplementedError("onednn_conv supports ungrouped, undilated 2-D NHWC/HWIO float32 convolutions")
    _require_loaded()
    strides = tuple(int(s) for s in window_strides)
    return _conv(lhs, rhs, strides, explicit_padding(lhs.shape, rhs.shape, strides, padding), int(training_threads))


def conv_bias_act(lhs, rhs, bias, window_strides, padding, activation: str):
    """`activation(lhs ⋆ rhs + bias)` as one oneDNN convolution with post-ops, for evaluation (no gradient):
    `lhs` `[batch, H, W, C_in]`, `rhs` `[kh, kw, C_in, C_out]`, `bias` `[C_out]`, all float32; `activation` one of
    `ACTIVATIONS`."""
    _require_loaded()
    strides = tuple(int(s) for s in window_strides)
    padding = explicit_padding(lhs.shape, rhs.shape, strides, padding)
    return _call("forward_bias_act", _output_shape(lhs.shape, rhs.shape, strides, padding), lhs, rhs, bias,
                 activation=np.int64(ACTIVATIONS[activation]), **_attributes(strides, padding, 0))
