"""The reference's DenseNet baselines (netType 3: depth 13, netType 4: depth 19), as Keras 2.0.6 builds them.

ssrnet-facts.md §3.4: titu1994's `DenseNet(input 64×64×3, depth, include_top=False, pooling='avg')` → Dense 128
ReLU → Dropout 0.2 → Dense 32 ReLU ("feat_a") → Dense 1 linear ("pred_a"): plain regression of the age in years;
any head can replace the last layer (`model.head`, its output layer named "pred_a").
Totals (trainable + BatchNorm moving statistics): depth 13 108,377; depth 19 242,009. Table 1's "DenseNet"
(1.1 MB, MAE 5.05) is depth 19.

Read off the saved architecture `baselines/densenet_reg_19_64.json` (Keras 2.0.6), i.e. titu1994's defaults:
  * no preprocessing layer: raw 0–255 BGR pixels, as SSR-Net (§3.1);
  * initial conv 3×3, 2·growth = 24 filters, stride 1, 'same', no bias, no pooling after it;
  * 3 dense blocks of (depth − 4) / 3 layers (3 for depth 13, 5 for depth 19), each BN → ReLU → Conv 3×3
    (growth 12, 'same', no bias) concatenated onto the block's input; no bottleneck, no dropout;
  * between blocks a transition BN → ReLU → Conv 1×1 (no bias, compression 1: all channels kept) → AvgPool 2×2;
  * after the last block BN → ReLU → global average pooling (64×64 input: 16×16×(84 + 60 + 60) = 204 for depth 19);
  * BatchNorm momentum 0.99, epsilon 1.1e-5; conv kernels he_normal as Keras 2.0.6 draws it (a normal with
    σ = √(2 / fan_in) truncated at 2σ — Flax's truncated_normal rescales σ to keep the variance, so it is undone
    here); head Dense kernels glorot-uniform; all biases zero;
  * an L2 kernel regulariser 1e-4 on the initial conv and the transition convs only — Keras adds Σ 1e-4·w² to the
    training loss; here that term is `weight_decay_penalty(params)`, for the training loss to add.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssr_jax.models.conv import Kernels, implementations
from ssr_jax.models.heads import Head, Regression
from ssr_jax.models.mobilenet import KERNEL_INIT, FeatureTail

# tf.truncated_normal keeps ±2σ, which shrinks the standard deviation by this factor; Flax divides σ by it.
_TRUNCATED_STD = 0.87962566103423978
CONV_INIT = nn.initializers.variance_scaling(2.0 * _TRUNCATED_STD**2, "fan_in", "truncated_normal")
WEIGHT_DECAY = 1e-4
HIDDEN_UNITS = 128


class DenseNetBody(nn.Module):
    """titu1994 DenseNet (no bottleneck, compression 1), include_top=False, pooling='avg': `[batch, H, W, 3]` →
    `[batch, channels]`.

    Modules: `initial_conv`; in block b `block{b}_layer{i}_bn` / `_conv`; between blocks `transition{b}_bn` /
    `_conv`; `final_bn`.
    """

    depth: int
    growth_rate: int
    num_blocks: int
    bn_momentum: float
    bn_epsilon: float
    conv_impl: Kernels | str = "xla"

    @nn.compact
    def __call__(self, x, *, train: bool):
        if (self.depth - 4) % 3:
            raise ValueError(f"DenseNet depth must be 3·n + 4 (3 blocks, no bottleneck), got {self.depth}")
        layers_per_block = (self.depth - 4) // 3
        conv_general_dilated, pools = implementations(self.conv_impl, train=train)

        def bn_relu(x, name):
            bn = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                              name=name)
            return nn.relu(bn(x))

        def conv(x, features, kernel, name):
            return nn.Conv(features, (kernel, kernel), padding="SAME", use_bias=False, kernel_init=CONV_INIT,
                           conv_general_dilated=conv_general_dilated, name=name)(x)

        x = conv(x, 2 * self.growth_rate, 3, "initial_conv")
        for block in range(1, self.num_blocks + 1):
            for layer in range(1, layers_per_block + 1):
                name = f"block{block}_layer{layer}"
                x = jnp.concatenate([x, conv(bn_relu(x, f"{name}_bn"), self.growth_rate, 3, f"{name}_conv")], axis=-1)
            if block < self.num_blocks:
                x = conv(bn_relu(x, f"transition{block}_bn"), x.shape[-1], 1, f"transition{block}_conv")
                x = pools["avg"](x, (2, 2))
        return jnp.mean(bn_relu(x, "final_bn"), axis=(1, 2))


class DenseNet(nn.Module):
    """Reference DenseNet baseline: raw 0–255 BGR images `[batch, 64, 64, 3]` float32 → the head's outputs (the
    reference's: `Regression`, `{"p": ([batch, 1],)}`)."""

    depth: int = 19
    head: Head = Regression(scale=1.0)
    growth_rate: int = 12
    num_blocks: int = 3
    dropout_rate: float = 0.2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1.1e-5
    conv: Kernels | str = "xla"  # ssr_jax.models.conv: concrete implementations, chosen per run

    @nn.compact
    def __call__(self, images, *, train: bool):
        x = DenseNetBody(self.depth, self.growth_rate, self.num_blocks, self.bn_momentum, self.bn_epsilon,
                         self.conv, name="densenet")(images, train=train)
        x = nn.relu(nn.Dense(HIDDEN_UNITS, kernel_init=KERNEL_INIT, name="hidden")(x))
        return FeatureTail(self.dropout_rate, self.head, name="head")(x, train=train)


def regularised_convs(params) -> list[str]:
    """Names (under `params["densenet"]`) of the convs whose kernels Keras L2-regularises: initial and transitions."""
    transitions = sorted(name for name in params["densenet"] if name.startswith("transition") and name.endswith("_conv"))
    return ["initial_conv", *transitions]


def weight_decay_penalty(params, weight_decay: float = WEIGHT_DECAY) -> jax.Array:
    """Keras's regularisation loss Σ weight_decay·w² (no ½) over `regularised_convs`, to add to the MAE."""
    body = params["densenet"]
    return weight_decay * sum(jnp.sum(jnp.square(body[name]["kernel"])) for name in regularised_convs(params))
