"""The reference's MobileNet baselines (netType 1: α = 0.25, netType 2: α = 0.5), as Keras 2.0.6 builds them.

ssrnet-facts.md §3.4: `keras.applications.MobileNet(input 64×64×3, alpha, include_top=False, weights=None)` →
Conv 1×1 (20, ReLU) → Flatten → Dropout 0.2 → Dense 32 ReLU ("feat_a") → Dense 1 linear ("pred_a"): plain
regression of the age in years (not DEX). Any head can replace the last layer (`model.head`; its output layer is
named "pred_a"). Totals (trainable + BatchNorm moving statistics): α 0.25 226,309;
α 0.5 842,421. Table 1's "MobileNet" (1.0 MB, MAE 6.50) is α 0.25.

Read off the saved architecture `baselines/mobilenet_reg_0.25_64.json` (Keras 2.0.6):
  * no preprocessing layer: the network sees the same raw 0–255 BGR pixels as SSR-Net (§3.1);
  * conv1: 3×3, stride 2, 'same', no bias; then 13 depthwise-separable blocks, each 3×3 depthwise ('same', no
    bias, depth multiplier 1, stride 1 or 2) → BN → ReLU6 → 1×1 pointwise (no bias) → BN → ReLU6;
  * filters int(f·α) of the MobileNet v1 widths; BatchNorm momentum 0.99, epsilon 1e-3;
  * every kernel glorot-uniform, biases zero, no regularisers.
For a 64×64 input the body ends at 2×2×int(1024·α), so the head's Flatten sees 2·2·20 = 80 features.

Layer names follow Keras (conv1, conv1_bn, conv_dw_k, conv_dw_k_bn, conv_pw_k, conv_pw_k_bn, feat_a, pred_a) so a
weight importer maps them one to one; 'SAME' padding in Flax pads as TensorFlow's 'same' (the extra row/column
goes bottom/right for stride 2).
"""
from __future__ import annotations

import flax.linen as nn

from ssr_jax.models.conv import Kernels, implementations
from ssr_jax.models.heads import Head, Regression

# Keras 2 defaults, used by every layer of the reference model (Flax's own are lecun_normal and epsilon 1e-5).
KERNEL_INIT = nn.initializers.glorot_uniform()

# MobileNet v1 at α = 1: conv1's filters, then (pointwise filters, depthwise stride) of the 13 separable blocks.
STEM_FILTERS = 32
SEPARABLE_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
# The reference head.
REDUCE_FILTERS = 20
FEATURE_UNITS = 32


class FeatureTail(nn.Module):
    """Dropout → Dense 32 ReLU ("feat_a") → the head's output layer (the reference's regression head: Dense 1
    linear, "pred_a"); returns the head's outputs, one stage each.

    The tail both reference baselines share (TYY_model.py, §3.4); what comes before the dropout differs (MobileNet:
    Conv 1×1 + Flatten; DenseNet: global average pooling + Dense 128 ReLU), so it stays in each model.
    """

    dropout_rate: float
    head: Head

    @nn.compact
    def __call__(self, features, *, train: bool):
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(features)
        x = nn.relu(nn.Dense(FEATURE_UNITS, kernel_init=KERNEL_INIT, name="feat_a")(x))
        return {name: (output,) for name, output in self.head.layer({"features": x}, stage=0, name="pred_a").items()}


class MobileNetV1(nn.Module):
    """keras.applications MobileNet (Keras 2.0.6), include_top=False: images `[batch, H, W, 3]` → `[batch, H/32,
    W/32, int(1024·α)]` after the last ReLU6."""

    alpha: float
    bn_momentum: float
    bn_epsilon: float
    conv: Kernels | str = "xla"

    @nn.compact
    def __call__(self, x, *, train: bool):
        conv_general_dilated, _ = implementations(self.conv, train=train)

        def conv_bn_relu6(x, name, filters, kernel, strides=1, groups=1):
            x = nn.Conv(filters, (kernel, kernel), strides=strides, padding="SAME", use_bias=False,
                        feature_group_count=groups, kernel_init=KERNEL_INIT,
                        conv_general_dilated=conv_general_dilated, name=name)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                             name=f"{name}_bn")(x)
            return nn.relu6(x)

        x = conv_bn_relu6(x, "conv1", int(STEM_FILTERS * self.alpha), 3, strides=2)
        for block, (filters, strides) in enumerate(SEPARABLE_BLOCKS, start=1):
            channels = x.shape[-1]  # depthwise: one 3×3 filter per channel (Flax kernel [3, 3, 1, channels])
            x = conv_bn_relu6(x, f"conv_dw_{block}", channels, 3, strides=strides, groups=channels)
            x = conv_bn_relu6(x, f"conv_pw_{block}", int(filters * self.alpha), 1)
        return x


class MobileNet(nn.Module):
    """Reference MobileNet baseline: raw 0–255 BGR images `[batch, 64, 64, 3]` float32 → the head's outputs (the
    reference's: `Regression`, `{"p": ([batch, 1],)}`)."""

    alpha: float = 0.25
    head: Head = Regression(scale=1.0)
    dropout_rate: float = 0.2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    conv: Kernels | str = "xla"  # ssr_jax.models.conv: concrete implementations, chosen per run

    @nn.compact
    def __call__(self, images, *, train: bool):
        x = MobileNetV1(self.alpha, self.bn_momentum, self.bn_epsilon, self.conv, name="mobilenet")(images,
                                                                                                  train=train)
        x = nn.relu(nn.Conv(REDUCE_FILTERS, (1, 1), padding="VALID", kernel_init=KERNEL_INIT,
                            conv_general_dilated=implementations(self.conv, train=train)[0], name="reduce")(x))
        x = x.reshape(x.shape[0], -1)  # Keras Flatten: H, W, C order
        return FeatureTail(self.dropout_rate, self.head, name="head")(x, train=train)
