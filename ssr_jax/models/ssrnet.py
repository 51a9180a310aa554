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
  mix = ReLU(Dense_s(Dropout(s_pre))) ⊙ ReLU(Dense_s(Dropout(x_pre)))
  f   = ReLU(Dense_2s(mix))            (in the reference code, not drawn in the paper's Fig. 1b)
then the head's output layer on f (and s_pre ⊙ x_pre): SSR's p = ReLU(Dense_s(f)), η = tanh(Dense_s(f)),
Δ = tanh(Dense_1(s_pre ⊙ x_pre)) (`ssr_jax.models.heads.ssr`); any other head on one stage.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ssr_jax.models.conv import Kernels, conv_norm_act, implementations
from ssr_jax.models.heads import SSR, Head

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
    conv: Kernels | str
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
            x = conv_norm_act(self, conv, norm, self.activation, x, chosen=self.conv, train=train)
            if block < 4:
                x = pool(x, (2, 2))
            taps.append(x)
        return taps


class FusionStage(nn.Module):
    """One stage's fusion block from a pair of taps, then the head's output layer for this stage (`head.layer`,
    called in this module's scope, so its parameters sit under `stage{k}/`): returns the head's outputs.

    The head sees `features` = the fused vector f `[batch, 2s]` and `pair` = s_pre ⊙ x_pre (SSR's Δ reads it).
    """

    num_bins: int
    block_pool: int
    head: Head
    stage: int
    dropout_rate: float
    conv: Kernels | str

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

        drop = nn.Dropout(self.dropout_rate, deterministic=not train)
        s_mix = nn.relu(dense(self.num_bins, "s_mix")(drop(s_pre)))
        x_mix = nn.relu(dense(self.num_bins, "x_mix")(drop(x_pre)))
        fused = nn.relu(dense(2 * self.num_bins, "fused")(s_mix * x_mix))
        return self.head.layer({"features": fused, "pair": s_pre * x_pre}, stage=self.stage, name="p")


class SSRNet(nn.Module):
    """The SSR-Net backbone with a head, for images `[batch, H, W, 3]` float (raw 0–255 BGR, like the reference).

    Returns the head's outputs, each a tuple with one array per stage (SSR: `p` and `eta` K × `[batch, s_k]`,
    `delta` K × `[batch]`; the other heads have one stage). The age is the head's readout (`head.age`), applied
    outside so that λ can be traced hyper-parameters.
    """

    stages: Sequence[int] = (3, 3, 3)
    head: Head = SSR()
    dropout_rate: float = 0.2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    conv: Kernels | str = "xla"
    # Compute dtype of the two streams (where nearly all FLOPs are); the fusion blocks, heads and readout stay
    # float32, since 1 / Π s_j (1 + λ_d Δ_j) amplifies rounding. Parameters and optimizer state are float32 either way.
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        stream = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, conv=self.conv, dtype=self.dtype)
        as_float32 = lambda taps: [tap.astype(jnp.float32) for tap in taps]  # noqa: E731
        x_taps = as_float32(Stream(32, "relu", **stream, name="x_stream")(images, train=train))
        s_taps = as_float32(Stream(16, "tanh", **stream, name="s_stream")(images, train=train))
        outputs = []
        for k, (num_bins, tap) in enumerate(zip(self.stages, TAPS_FOR_NUM_STAGES[len(self.stages)])):
            outputs.append(FusionStage(
                num_bins=num_bins,
                block_pool=BLOCK_POOL_FOR_TAP[tap],
                head=self.head,
                stage=k,
                dropout_rate=self.dropout_rate,
                conv=self.conv,
                name=f"stage{k + 1}",
            )(x_taps[tap], s_taps[tap], train=train))
        return {name: tuple(stage[name] for stage in outputs) for name in outputs[0]}
