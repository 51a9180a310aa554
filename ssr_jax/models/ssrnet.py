"""SSR-Net (Yang et al., IJCAI 2018) as the Keras reference builds it, generalised to any K from 1 to 4.

Backbone: two streams of four 3×3 'VALID' conv → BatchNorm → activation blocks.
  x stream: 32 channels, ReLU, 2×2 average pooling after blocks 1–3.
  s stream: 16 channels, tanh, 2×2 max pooling after blocks 1–3.
For a 64×64 input the taps are: pool1 31×31, pool2 14×14, pool3 6×6, conv4 4×4.

Stage k (coarsest bins first) fuses one tap of each stream; deeper features feed coarser stages. Tap rule:
  K = 1: (conv4)            K = 2: (conv4, pool2)
  K = 3: (conv4, pool2, pool1)  — the reference
  K = 4: (conv4, pool3, pool2, pool1) — the tap the reference leaves unused becomes the second stage.
Each fusion stage pools its tap to 3×3 (conv4 is used as is, 4×4), so the fused vectors are 160 (conv4) or 90 long.

Per stage (ssrnet-facts.md §3.2): 1×1 conv to 10 channels + ReLU on each stream, block pooling (max for s, average
for x), flatten → s_pre, x_pre;
  Δ   = tanh(Dense_1(s_pre ⊙ x_pre))
  mix = ReLU(Dense_s(Dropout(s_pre))) ⊙ ReLU(Dense_s(Dropout(x_pre)))
  f   = ReLU(Dense_2s(mix))            (in the reference code, not drawn in the paper's Fig. 1b)
  p   = ReLU(Dense_s(f)) or softmax    η = tanh(Dense_s(f))
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ssr_jax.models.conv import conv_norm_act, implementations

# Keras defaults, which the reference relies on (Flax's own defaults differ: lecun_normal, epsilon 1e-5).
KERNEL_INIT = nn.initializers.glorot_uniform()
FUSION_CHANNELS = 10

# Index into the backbone taps (pool1, pool2, pool3, conv4) for each stage, per K; and the block pool of each tap.
TAPS_FOR_NUM_STAGES = {1: (3,), 2: (3, 1), 3: (3, 1, 0), 4: (3, 2, 1, 0)}
BLOCK_POOL_FOR_TAP = {0: 8, 1: 4, 2: 2, 3: 1}


class Stream(nn.Module):
    """One backbone stream; returns its four taps `[(batch, 31, 31, c), (14, 14), (6, 6), (4, 4)]` for 64×64 input."""

    features: int
    activation: str  # "relu" (x stream) or "tanh" (s stream)
    bn_momentum: float
    bn_epsilon: float
    conv: str
    dtype: Any = jnp.float32  # compute dtype; parameters stay float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        conv_general_dilated, pools = implementations(self.conv, train=train)
        pool = pools["avg" if self.activation == "relu" else "max"]
        taps = []
        for block in range(1, 5):
            conv = nn.Conv(self.features, (3, 3), padding="VALID", kernel_init=KERNEL_INIT, dtype=self.dtype,
                           conv_general_dilated=conv_general_dilated, name=f"conv{block}")
            norm = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                dtype=self.dtype, name=f"bn{block}")
            x = conv_norm_act(self, conv, norm, self.activation, x, choice=self.conv, train=train)
            if block < 4:
                x = pool(x, (2, 2))
            taps.append(x)
        return taps


class FusionStage(nn.Module):
    """One stage's heads from a pair of taps; returns p `[batch, s]`, η `[batch, s]`, Δ `[batch]`.

    A switched-off head (with_delta / with_eta False) has no parameters and returns zeros, so the same readout
    serves every variant.
    """

    num_bins: int
    block_pool: int
    p_activation: str
    p_outputs: int | None
    with_delta: bool
    with_eta: bool
    dropout_rate: float
    conv: str

    @nn.compact
    def __call__(self, x_tap, s_tap, *, train: bool):
        dense = lambda features, name: nn.Dense(features, kernel_init=KERNEL_INIT, name=name)  # noqa: E731
        conv_general_dilated, pools = implementations(self.conv, train=train)
        conv = lambda name: nn.Conv(  # noqa: E731
            FUSION_CHANNELS, (1, 1), padding="VALID", kernel_init=KERNEL_INIT, conv_general_dilated=conv_general_dilated,
            name=name,
        )
        s = nn.relu(conv("s_conv")(s_tap))
        x = nn.relu(conv("x_conv")(x_tap))
        if self.block_pool > 1:
            window = (self.block_pool, self.block_pool)
            s = pools["max"](s, window)
            x = pools["avg"](x, window)
        # Flatten in H, W, C order, as Keras does, so imported dense kernels line up.
        s_pre = s.reshape(s.shape[0], -1)
        x_pre = x.reshape(x.shape[0], -1)

        if self.with_delta:
            delta = jnp.tanh(dense(1, "delta")(s_pre * x_pre))[:, 0]
        else:
            delta = jnp.zeros(s_pre.shape[:1], s_pre.dtype)

        drop = nn.Dropout(self.dropout_rate, deterministic=not train)
        s_mix = nn.relu(dense(self.num_bins, "s_mix")(drop(s_pre)))
        x_mix = nn.relu(dense(self.num_bins, "x_mix")(drop(x_pre)))
        fused = nn.relu(dense(2 * self.num_bins, "fused")(s_mix * x_mix))

        logits = dense(self.p_outputs or self.num_bins, "p")(fused)
        p = {"softmax": nn.softmax, "relu": nn.relu, "linear": lambda z: z}[self.p_activation](logits)
        if self.with_eta:
            eta = jnp.tanh(dense(self.num_bins, "eta")(fused))
        else:
            eta = jnp.zeros_like(p)
        return p, eta, delta


class SSRNet(nn.Module):
    """SSR-Net heads for images `[batch, H, W, 3]` float (raw 0–255 BGR, like the reference).

    Returns a dict of per-stage tuples: `p` and `eta` K × `[batch, s_k]`, `delta` K × `[batch]`. The age readout is
    `ssr_jax.ssr.ssr_age` (or `dex_age`), applied outside so that λ can be traced hyper-parameters. `p_outputs`
    replaces the width of the p layers (1 with a linear p: the plain regression head on the same fusion block).
    """

    stages: Sequence[int] = (3, 3, 3)
    p_activation: str = "relu"
    p_outputs: int | None = None
    with_delta: bool = True
    with_eta: bool = True
    dropout_rate: float = 0.2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    conv: str = "auto"
    # Compute dtype of the two streams (where nearly all FLOPs are); the fusion heads and the readout stay float32,
    # since 1 / Π s_j (1 + λ_d Δ_j) amplifies rounding. Parameters and optimizer state are float32 either way.
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        stream = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, conv=self.conv, dtype=self.dtype)
        as_float32 = lambda taps: [tap.astype(jnp.float32) for tap in taps]  # noqa: E731
        x_taps = as_float32(Stream(32, "relu", **stream, name="x_stream")(images, train=train))
        s_taps = as_float32(Stream(16, "tanh", **stream, name="s_stream")(images, train=train))
        heads = {"p": [], "eta": [], "delta": []}
        for k, (num_bins, tap) in enumerate(zip(self.stages, TAPS_FOR_NUM_STAGES[len(self.stages)]), start=1):
            p, eta, delta = FusionStage(
                num_bins=num_bins,
                block_pool=BLOCK_POOL_FOR_TAP[tap],
                p_activation=self.p_activation,
                p_outputs=self.p_outputs,
                with_delta=self.with_delta,
                with_eta=self.with_eta,
                dropout_rate=self.dropout_rate,
                conv=self.conv,
                name=f"stage{k}",
            )(x_taps[tap], s_taps[tap], train=train)
            heads["p"].append(p)
            heads["eta"].append(eta)
            heads["delta"].append(delta)
        return {name: tuple(values) for name, values in heads.items()}
