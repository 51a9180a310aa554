"""One optimizer step, the quantity the layout tests compare (a vmapped group against its members alone, several
devices against one, two hosts against one).

Two program layouts of the same training step add the same numbers in different orders, so their results agree up
to float32 rounding — at one step. After several steps that rounding is amplified by training (a chaotic map) by an
amount that depends on the CPU's kernels, so a trained metric is no test of the layout. Each comparison here takes
the training state after exactly one step from the same initial state: the loss at the initial parameters, the
gradient (read back from Adam's first moment: after one step μ = (1 − β1)·g), the BatchNorm statistics and the
updated parameters.
"""
import jax
import numpy as np
import optax

from ssr_jax import parallel

# Float32's unit roundoff is u = 2^-24 ≈ 6e-8. The loss and the BatchNorm statistics are forward quantities,
# continuous in the inputs: a reordered sum changes them by a few hundred u at most.
LOSS_RTOL = 1e-5
STATISTICS_RTOL = 1e-5
# Gradients are not continuous in the forward values: where a ReLU input or a max-pooling near-tie sits within
# rounding of its kink, the two layouts' rounding routes that pixel's gradient differently — a discrete change of one
# pixel's share of every gradient upstream of it, ≈ 1/√(batch × 62 × 62) ≈ 4e-3 of a convolution leaf's norm per
# flip (measured: up to 2e-3, against ~1e-6 for leaves no flip reaches). So a gradient leaf is compared by its
# relative L2 difference, allowing a handful of such flips and nothing like a wrong gradient (an error of order 1).
GRADIENT_RTOL = 2e-2
# Adam's first step is −lr·g/(|g| + ε): ≈ −lr·sign(g) wherever |g| ≫ ε = 1e-8.
SIGN_DETERMINED = 1e-6


def one_step(trainer, keys, hparams, *, b1: float, place=lambda state: state) -> dict[str, np.ndarray]:
    """Host copies of `{"loss", "gradient/…", "params/…", "batch_stats/…"}` (leading member axis) after one step.

    `trainer` must have one step per epoch (data.num_train == train.batch_size), so its first epoch is one step;
    `place` lays the initial state out on the trainer's mesh (`parallel.shard_members`)."""
    assert trainer.steps_per_epoch == 1, "one step per epoch: set data.num_train to train.batch_size"
    state = place(trainer.init(keys, hparams))
    state, metrics = trainer.train_epoch(state, keys, hparams, 1)
    trees = {"gradient": optax.tree_utils.tree_get(state.opt_state, "mu"), "params": state.params,
             "batch_stats": state.batch_stats}
    flat = {"loss": metrics["train_loss"]}
    for kind, tree in trees.items():
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            flat[f"{kind}{jax.tree_util.keystr(path)}"] = leaf
    flat = parallel.fetch(flat)
    # μ / (1 − β1) on the host: on the device each leaf's shape and layout would compile a division of its own.
    return {name: value / np.float32(1 - b1) if name.startswith("gradient") else value for name, value in flat.items()}


def assert_same_step(got: dict, want: dict, *, members: int, learning_rate: float) -> None:
    """`got`'s first `members` members took the same step as `want`'s, up to float32 rounding (the tolerances
    above): the same loss, BatchNorm statistics and gradients, and each parameter moved by the same −lr·sign(g)
    wherever both gradients agree in sign and |g| ≫ ε (to 1 %), by at most 2·lr elsewhere (Adam's bound)."""
    np.testing.assert_allclose(got["loss"][:members], want["loss"][:members], rtol=LOSS_RTOL, err_msg="loss")
    gradients = [name for name in want if name.startswith("gradient")]
    largest = max(np.linalg.norm(want[name][member]) for name in gradients for member in range(members))
    for name in gradients:
        for member in range(members):
            got_leaf, want_leaf = got[name][member], want[name][member]
            # Conv biases in front of batch-statistics BatchNorm have a true gradient of 0: rounding noise only.
            scale = max(np.linalg.norm(want_leaf), 1e-3 * largest)
            difference = np.linalg.norm(got_leaf - want_leaf) / scale
            assert difference <= GRADIENT_RTOL, f"{name}, member {member}: relative difference {difference:.3g}"
        parameter = "params" + name[len("gradient"):]  # the parameter this gradient moved
        got_gradient, want_gradient = got[name][:members], want[name][:members]
        agree = (np.sign(got_gradient) == np.sign(want_gradient)) & (
            np.minimum(np.abs(got_gradient), np.abs(want_gradient)) > SIGN_DETERMINED)
        moved = np.abs(got[parameter][:members] - want[parameter][:members])
        bound = np.where(agree, 1e-2, 2.0) * learning_rate + 1e-6 * np.abs(want[parameter][:members])
        assert (moved <= bound).all(), f"{parameter}: updated parameters differ by up to {moved.max():.3g}"
    for name in [name for name in want if name.startswith("batch_stats")]:
        np.testing.assert_allclose(got[name][:members], want[name][:members], rtol=STATISTICS_RTOL, atol=1e-6,
                                   err_msg=name)
