"""Convolution as patches × matrix, a drop-in for `lax.conv_general_dilated` in `flax.linen.Conv`.

Why: XLA:CPU runs the weight-gradient convolutions of this net several times slower inside a `lax.scan`/while
body than outside one (measured here: ≈35 vs ≈200 training images/s at batch 50, jax 0.10.2), and a training epoch
is one scan. Written as slices + one matrix product, forward and backward are plain dots, which XLA:CPU runs at
the same speed in and out of loops. Same parameters (HWIO kernel), same results up to float rounding.
"""
from __future__ import annotations

import jax.numpy as jnp


def patches_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, precision=None, preferred_element_type=None):
    """`lhs` `[batch, H, W, C_in]` ⋆ `rhs` `[kh, kw, C_in, C_out]`, stride 1, 'VALID' → `[batch, H−kh+1, W−kw+1, C_out]`.

    Only the case SSR-Net uses is supported; anything else is refused rather than computed wrongly.
    """
    unit = (1,) * (lhs.ndim - 2)
    if (tuple(window_strides) != unit or feature_group_count != 1
            or any(d is not None and tuple(d) != unit for d in (lhs_dilation, rhs_dilation))
            or not (padding == "VALID" or all(tuple(p) == (0, 0) for p in padding))):
        raise NotImplementedError("patches_conv supports stride 1, no dilation, no groups, 'VALID' padding only")
    kh, kw, c_in, c_out = rhs.shape
    height, width = lhs.shape[1] - kh + 1, lhs.shape[2] - kw + 1
    # Patch channels ordered (dy, dx, c_in), the order of the HWIO kernel flattened to [kh·kw·c_in, c_out].
    patches = jnp.concatenate(
        [lhs[:, dy:dy + height, dx:dx + width, :] for dy in range(kh) for dx in range(kw)], axis=-1
    )
    return jnp.einsum("bhwk,ko->bhwo", patches, rhs.reshape(kh * kw * c_in, c_out),
                      precision=precision, preferred_element_type=preferred_element_type)
