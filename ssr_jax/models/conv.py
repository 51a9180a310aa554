"""How convolutions and poolings are computed (`model.conv`): the same parameters (HWIO kernels) and the same
results up to float rounding, by different XLA programs, because XLA backends differ in what they run fast.

  "xla"      `lax.conv_general_dilated` and flax's reduce-window pooling: cuDNN on GPUs, the MXU on TPUs.
  "patches"  convolution as shifted slices × one matrix ("patches"), pooling as crop + reshape + reduce.
  "mixed"    forward and kernel gradient as "patches" does them, the input gradient as a transposed
             `lax.conv` (a hand-written `jax.custom_vjp`); poolings as "patches".
  "onednn"   oneDNN's convolution primitives through `jax.ffi` (`ssr_jax.models.onednn`; CPU only): forward,
             input and kernel gradients; in evaluation conv → BatchNorm → activation is one primitive
             (`conv_norm_act`). Poolings as "patches" to train, as "xla" to evaluate.
  "auto"     the default: on a CPU "onednn" where it builds and loads, else "mixed" to train and "xla" to
             evaluate; "xla" on accelerators; "patches" for vmapped groups of members (`resolve`).

"auto" is a config value only: a run resolves it once, before anything is traced, from the platform of the devices
it uses and whether its members are vmapped (`kernels`), and the model receives the concrete `Kernels` (one name
for its training pass, one for its evaluation pass) as a plain field; the run records them in its summary.

Why on a CPU: XLA:CPU runs the *weight-gradient* convolutions of `lax.conv` many times slower inside a
`lax.scan`/while body than outside one, and a training epoch is one scan; written as a patch matrix product, the
kernel gradient is one plain dot. Its forward convolutions, and the transposed convolution of the input gradient, are
fast: in evaluation `lax.conv` with reduce-window pooling beats patches and reshape pooling.
flax's pooling lowers to reduce-window, whose gradient (select-and-scatter) XLA:CPU runs as scalar loops; the
non-overlapping windows all models here use are a reshape and a mean/max instead. The one difference is the
gradient of a max over exact ties, which `jnp.max` splits between them where reduce-window picks one.
oneDNN (what TF-Keras and PyTorch run on a CPU) beats all of these, forward and backward, where it is available.
Measured speeds of each choice, per CPU: benchmarks/README.md.
"""
from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssr_jax.models import onednn


def patches_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, precision=None, preferred_element_type=None):
    """`lhs` `[batch, H, W, C_in]` ⋆ `rhs` `[kh, kw, C_in / groups, C_out]` → `[batch, H', W', C_out]`.

    Supports what SSR-Net and the reference baselines use: any strides, 'VALID', 'SAME' (TensorFlow's split of an
    odd padding: the extra row/column at the end) or explicit padding, and either no groups or a depthwise
    convolution with one filter per channel (groups = C_in = C_out). Dilations and other groupings are refused
    rather than computed wrongly.
    """
    nhwc_hwio = dimension_numbers is None or (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
                                              and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1))
    dilated = any(d is not None and tuple(d) != (1, 1) for d in (lhs_dilation, rhs_dilation))
    if lhs.ndim != 4 or not nhwc_hwio or dilated:
        raise NotImplementedError("patches_conv supports 2-D NHWC/HWIO convolutions without dilation only")
    kh, kw, group_in, c_out = rhs.shape
    depthwise = feature_group_count > 1
    if depthwise and not (feature_group_count == lhs.shape[-1] == c_out and group_in == 1):
        raise NotImplementedError("patches_conv supports groups only as a depthwise convolution (multiplier 1)")
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
    lhs = jnp.pad(lhs, ((0, 0), *map(tuple, padding), (0, 0)))
    (sh, sw), (height, width) = window_strides, ((lhs.shape[1] - kh) // window_strides[0] + 1,
                                                 (lhs.shape[2] - kw) // window_strides[1] + 1)
    taps = [lhs[:, dy:dy + (height - 1) * sh + 1:sh, dx:dx + (width - 1) * sw + 1:sw, :]
            for dy in range(kh) for dx in range(kw)]
    if depthwise:  # out[..., c] = Σ_taps tap[..., c] · w[dy, dx, 0, c]
        return sum(tap * weight for tap, weight in zip(taps, rhs.reshape(kh * kw, c_out)))
    # Patch channels ordered (dy, dx, c_in), the order of the HWIO kernel flattened to [kh·kw·c_in, c_out].
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    return jnp.einsum("bhwk,ko->bhwo", patches, rhs.reshape(kh * kw * group_in, c_out),
                      precision=precision, preferred_element_type=preferred_element_type)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _patches(padded, kh: int, kw: int, height: int, width: int):
    """`[batch, H + kh − 1, W + kw − 1, C]` → `[batch, H, W, kh·kw·C]`, channels ordered (dy, dx, c) like the
    HWIO kernel flattened to `[kh·kw·C, C_out]`."""
    taps = [padded[:, dy:dy + height, dx:dx + width, :] for dy in range(kh) for dx in range(kw)]
    return taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _mixed_conv(lhs, rhs, padding):
    return _mixed_conv_forward(lhs, rhs, padding)[0]


def _mixed_conv_forward(lhs, rhs, padding):
    (top, bottom), (left, right) = padding
    kh, kw, _, c_out = rhs.shape
    padded = jnp.pad(lhs, ((0, 0), (top, bottom), (left, right), (0, 0)))
    patches = _patches(padded, kh, kw, padded.shape[1] - kh + 1, padded.shape[2] - kw + 1)
    return jnp.einsum("bhwk,ko->bhwo", patches, rhs.reshape(-1, c_out)), (patches, rhs)


def _mixed_conv_backward(padding, residuals, cotangent):
    """∂L/∂rhs = patchesᵀ · cotangent (one dot); ∂L/∂lhs = the cotangent padded to "full" and convolved with the
    kernel turned 180° with its in/out channels swapped, cropped by the forward padding."""
    patches, rhs = residuals
    (top, bottom), (left, right) = padding
    kh, kw = rhs.shape[:2]
    rhs_grad = jnp.einsum("bhwk,bhwo->ko", patches, cotangent).reshape(rhs.shape)
    lhs_grad = jax.lax.conv_general_dilated(
        cotangent, jnp.swapaxes(rhs[::-1, ::-1], 2, 3), (1, 1),
        ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)), dimension_numbers=_NHWC)
    return lhs_grad, rhs_grad


_mixed_conv.defvjp(_mixed_conv_forward, _mixed_conv_backward)


def mixed_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
               feature_group_count=1, precision=None, preferred_element_type=None):
    """`lhs` `[batch, H, W, C_in]` ⋆ `rhs` `[kh, kw, C_in, C_out]`: forward and kernel gradient as one patch matrix
    product, input gradient as a transposed `lax.conv` (module docstring). Stride-1, ungrouped, undilated 3×3-type
    convolutions with padding "VALID", "SAME" or explicit; every other convolution (strided, depthwise, 1×1) is
    `patches_conv`'s, whose gradients are plain dots already."""
    kh, kw = rhs.shape[:2]
    plain = (tuple(window_strides) == (1, 1) and feature_group_count == 1 and (kh, kw) != (1, 1)
             and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
             and preferred_element_type is None)
    if not plain:
        return patches_conv(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                            feature_group_count, precision, preferred_element_type)
    if dimension_numbers is not None and not (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
                                              and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1)):
        raise NotImplementedError("mixed_conv supports 2-D NHWC/HWIO convolutions only")
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
    return _mixed_conv(lhs, rhs, tuple(map(tuple, padding)))


def _block_pool(reduce):
    def pool(inputs, window: tuple[int, int]):
        """`[batch, H, W, C]` → `[batch, H // wh, W // ww, C]`: windows of `window`, stride = window, 'VALID' (the
        last H mod wh rows and W mod ww columns are dropped, as reduce-window drops them)."""
        (wh, ww), (batch, height, width, channels) = window, inputs.shape
        blocks = inputs[:, :height // wh * wh, :width // ww * ww, :].reshape(
            batch, height // wh, wh, width // ww, ww, channels)
        return reduce(blocks, axis=(2, 4))
    return pool


_BLOCK_POOLS = {"avg": _block_pool(jnp.mean), "max": _block_pool(jnp.max)}
_FLAX_POOLS = {"avg": lambda inputs, window: nn.avg_pool(inputs, window, strides=window),
               "max": lambda inputs, window: nn.max_pool(inputs, window, strides=window)}


def onednn_or_patches(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                      dimension_numbers=None, feature_group_count=1, precision=None, preferred_element_type=None, *,
                      training_threads: int = 0):
    """`onednn.onednn_conv` (with `training_threads`) for the convolutions it computes (ungrouped float32
    NHWC/HWIO); `patches_conv` for the rest (MobileNet's depthwise convolutions, bfloat16 streams)."""
    arguments = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                 feature_group_count, precision, preferred_element_type)
    try:
        return onednn.onednn_conv(*arguments, training_threads=training_threads)
    except NotImplementedError:
        return patches_conv(*arguments)


# Concrete implementations: a `conv_general_dilated` for `flax.linen.Conv` (None: lax's own) and the two poolings
# (in training, in evaluation).
CONVOLUTIONS = {"patches": patches_conv, "mixed": mixed_conv, "xla": None, "onednn": onednn_or_patches}
POOLINGS = {"patches": _BLOCK_POOLS, "mixed": _BLOCK_POOLS, "xla": _FLAX_POOLS}
_POOLING_OF = {"patches": ("patches", "patches"), "mixed": ("mixed", "mixed"), "xla": ("xla", "xla"),
               "onednn": ("patches", "xla")}  # reduce-window is fastest forward, its gradient is not
# What `model.conv` may say: a concrete implementation, or "auto".
CONV_CHOICES = ("auto", *CONVOLUTIONS)


class Kernels(NamedTuple):
    """The concrete implementations (keys of `CONVOLUTIONS`) of a model's training pass and of its evaluation pass,
    and the OpenMP threads of each differentiated oneDNN call (`onednn.training_threads`; 0: the library's
    default): what the model receives as its `conv` field, and what a run records."""

    train: str
    evaluate: str
    threads: int = 0

    def of(self, train: bool) -> str:
        return self.train if train else self.evaluate


@functools.cache
def _onednn_fallback(reason: str) -> None:
    warnings.warn(f"model.conv=auto: {reason}; using XLA's convolutions", RuntimeWarning, stacklevel=4)


def resolve(choice: str, *, train: bool, backend: str | None = None, vmapped: bool = False) -> str:
    """`model.conv` → the implementation a training-mode or evaluation-mode pass uses on the platform `backend`
    ("cpu", "gpu", "tpu"; default: JAX's default backend). Called before tracing (`kernels`), never inside a model.

    "auto": "patches" for `vmapped` members — a vmapped `lax.conv` whose kernel differs per member becomes a grouped
    convolution, which XLA:CPU runs several times slower and XLA's SPMD partitioner refuses to split over a member
    mesh axis; patches stay batched dots (and a oneDNN call would run once per member). Else on a CPU "onednn" when
    `onednn.unavailable()` says nothing against it — which builds the extension on first use, here and not in a
    trace — (else its reason is printed once, and "mixed" trains, "xla" evaluates: forward only, where lax.conv and
    reduce-window pooling are fastest); "xla" on every other backend. A concrete choice is returned as it is."""
    if choice != "auto":
        return choice
    if vmapped:
        return "patches"
    if (backend or jax.default_backend()) != "cpu":
        return "xla"
    if reason := onednn.unavailable():
        _onednn_fallback(reason)
        return "mixed" if train else "xla"
    return "onednn"


def kernels(choice: str, *, platform: str, vmapped: bool = False) -> Kernels:
    """`model.conv` = `choice` resolved for both passes on devices of `platform` (`resolve`). A concrete "onednn"
    is loaded here (built first if needed) so that no trace has to; where it cannot be, `RuntimeError` with the
    one-line reason."""
    train, evaluate = (resolve(choice, train=train, backend=platform, vmapped=vmapped) for train in (True, False))
    if "onednn" not in (train, evaluate):
        return Kernels(train, evaluate)
    if reason := onednn.unavailable():
        raise RuntimeError(reason)
    return Kernels(train, evaluate, onednn.training_threads())


def implementations(chosen: Kernels | str, *, train: bool):
    """(`conv_general_dilated` for `flax.linen.Conv`, {"avg", "max"} poolings) of the training or evaluation pass;
    `chosen` is `Kernels` or one concrete name for both passes (oneDNN's calls then on the library's threads)."""
    chosen = Kernels(chosen, chosen) if isinstance(chosen, str) else chosen
    name = chosen.of(train)
    if name not in CONVOLUTIONS:
        raise ValueError(f"conv={chosen!r}: a model takes concrete implementations {tuple(CONVOLUTIONS)}; "
                         "resolve model.conv before building it (ssr_jax.models.conv.kernels)")
    convolution = CONVOLUTIONS[name]
    if name == "onednn":
        convolution = functools.partial(convolution, training_threads=chosen.threads)
    return convolution, POOLINGS[_POOLING_OF[name][0 if train else 1]]


_ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}


def conv_norm_act(parent: nn.Module, conv: nn.Conv, norm: nn.BatchNorm, activation: str, inputs, *,
                  chosen: Kernels | str, train: bool):
    """`activation(norm(conv(inputs)))` for `conv` and `norm`, submodules of `parent` created (not yet called) in
    its compact `__call__`; `activation` "relu" or "tanh".

    Evaluating float32 with `chosen` naming "onednn" for evaluation (and parameters already there), one oneDNN
    convolution with the BatchNorm folded into its kernel and bias and the activation as a post-op, as TF folds them:
    act(x ⋆ (W·k) + (b − μ)·k + β), k = γ / √(σ² + ε). Same values up to float rounding; no pass over the
    convolution's output between the three."""
    evaluate = chosen if isinstance(chosen, str) else chosen.evaluate
    fused = (not train and evaluate == "onednn" and not parent.is_initializing()
             and inputs.dtype == jnp.float32 and jnp.dtype(conv.dtype or jnp.float32) == jnp.float32)
    if not fused:
        return _ACTIVATIONS[activation](norm(conv(inputs)))
    kernel_and_bias = parent.variables["params"][conv.name]
    scale_and_shift, statistics = parent.variables["params"][norm.name], parent.variables["batch_stats"][norm.name]
    k = scale_and_shift["scale"] * jax.lax.rsqrt(statistics["var"] + norm.epsilon)
    bias = kernel_and_bias.get("bias", jnp.zeros_like(k))
    strides = (conv.strides,) * 2 if isinstance(conv.strides, int) else tuple(conv.strides or (1, 1))
    return onednn.conv_bias_act(inputs, kernel_and_bias["kernel"] * k, (bias - statistics["mean"]) * k
                                + scale_and_shift["bias"], strides, conv.padding, activation)
