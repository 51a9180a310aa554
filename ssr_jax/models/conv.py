"""Convolution as shifted slices × matrix, a drop-in for `lax.conv_general_dilated` in `flax.linen.Conv`, and
pooling as crop + reshape + reduce: the loop-friendly kernels behind `model.conv = "patches"`.

Why: XLA:CPU runs the weight-gradient convolutions several times slower inside a `lax.scan`/while body than outside
one (measured here: ≈35 vs ≈200 SSR-Net training images/s at batch 50, jax 0.10.2; the DenseNet baseline trained at
≈1 image/s), and a training epoch is one scan. Written as slices + one matrix product (or, for a depthwise
convolution, slices × per-channel weights), forward and backward are plain dots and elementwise ops, which XLA:CPU
runs at the same speed in and out of loops. Same parameters (HWIO kernel), same results up to float rounding.

Pooling likewise: flax's `avg_pool` / `max_pool` lower to XLA `reduce-window`, and their gradients to more
reduce-windows and select-and-scatter, which XLA:CPU runs as scalar loops (16 % of all op time in a training step,
benchmarks/README.md). Non-overlapping windows (all SSR-Net and the baselines use) are a reshape and a mean/max
instead: same forward values, fused elementwise work both ways (SSR-Net training: ≈290 → ≈410 images/s). The one
difference is in the gradient of a max over exact ties, which `jnp.max` splits between them where reduce-window
picks one.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


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


def _block_pool(reduce):
    def pool(inputs, window: tuple[int, int]):
        """`[batch, H, W, C]` → `[batch, H // wh, W // ww, C]`: windows of `window`, stride = window, 'VALID' (the
        last H mod wh rows and W mod ww columns are dropped, as reduce-window drops them)."""
        (wh, ww), (batch, height, width, channels) = window, inputs.shape
        blocks = inputs[:, :height // wh * wh, :width // ww * ww, :].reshape(
            batch, height // wh, wh, width // ww, ww, channels)
        return reduce(blocks, axis=(2, 4))
    return pool


# `model.conv`: how every convolution and pooling is computed. Same parameters and forward results either way.
CONV_IMPLEMENTATIONS = {"patches": patches_conv, "xla": None}
POOL_IMPLEMENTATIONS = {
    "patches": {"avg": _block_pool(jnp.mean), "max": _block_pool(jnp.max)},
    "xla": {"avg": lambda inputs, window: nn.avg_pool(inputs, window, strides=window),
            "max": lambda inputs, window: nn.max_pool(inputs, window, strides=window)},
}
