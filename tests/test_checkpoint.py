"""ssr_jax.checkpoint: round trips, retention, kill safety and the mismatch / missing-checkpoint errors."""
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssr_jax import checkpoint


@flax.struct.dataclass
class State:
    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: optax.OptState
    key: jax.Array


def make_state(seed: int = 0, members: int = 2, width: int = 161) -> State:
    """A small training state with a leading member axis, as a vmapped sweep would have."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {
        "stage_1": {"delta": {"kernel": jax.random.normal(k1, (members, width, 1))}},
        "head": (jnp.arange(members * 3, dtype=jnp.float32).reshape(members, 3), jnp.full((members,), seed, jnp.int32)),
    }
    return State(
        step=jnp.full((members,), seed, jnp.int32),
        params=params,
        batch_stats={"bn": {"mean": jax.random.uniform(k2, (members, 4), dtype=jnp.bfloat16)}},
        opt_state=optax.adam(1e-3).init(params),
        key=jax.random.key_data(jax.random.split(jax.random.key(seed + 1), members)),
    )


def assert_same(restored, expected):
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        assert isinstance(got, jax.Array)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_round_trip_struct_dataclass_into_eval_shape_target(tmp_path, capfd):
    state = make_state(seed=3)
    checkpoint.save(tmp_path, 5, state)
    restored = checkpoint.restore(tmp_path, jax.eval_shape(lambda: make_state()))
    assert isinstance(restored, State)
    assert_same(restored, state)
    assert restored.key.dtype == jnp.uint32 and restored.batch_stats["bn"]["mean"].dtype == jnp.bfloat16
    assert isinstance(restored.params["head"], tuple)
    assert capfd.readouterr().out == ""  # quiet: nothing on stdout


def test_round_trip_typed_prng_key_into_concrete_target(tmp_path):
    state = {"key": jax.random.key(7), "x": np.arange(3, dtype=np.float32)}
    checkpoint.save(tmp_path, 1, state)
    restored = checkpoint.restore(tmp_path, {"key": jax.random.key(0), "x": np.zeros(3, np.float32)})
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))
    np.testing.assert_array_equal(restored["x"], state["x"])


def test_latest_step_and_retention(tmp_path):
    assert checkpoint.latest_step(tmp_path / "missing") is None
    assert not (tmp_path / "missing").exists()  # reading does not create the directory
    assert checkpoint.latest_step(tmp_path) is None
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, make_state(seed=step), keep=2)
    assert checkpoint.latest_step(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "3"]
    with pytest.raises(ValueError, match="keep"):
        checkpoint.save(tmp_path, 4, make_state(), keep=0)


def test_restore_specific_step(tmp_path):
    for step in (1, 2):
        checkpoint.save(tmp_path, step, make_state(seed=step))
    target = jax.eval_shape(make_state)
    assert_same(checkpoint.restore(tmp_path, target, step=1), make_state(seed=1))
    assert_same(checkpoint.restore(tmp_path, target), make_state(seed=2))


def test_a_relative_directory_saves_and_restores(tmp_path, monkeypatch):
    """`ssr-jax evaluate runs/x` names its run relative to the working directory: Orbax restores only absolute paths,
    and its refusal must not read as a damaged checkpoint (whose message says to delete it)."""
    monkeypatch.chdir(tmp_path)
    checkpoint.save("run/checkpoint", 2, make_state(seed=2))
    assert checkpoint.stored_shapes("run/checkpoint")["params/stage_1/delta/kernel"] == (2, 161, 1)
    assert_same(checkpoint.restore("run/checkpoint", jax.eval_shape(make_state)), make_state(seed=2))


def test_unfinished_tmp_dir_is_ignored_and_cleaned(tmp_path):
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, make_state(seed=step))
    # Worst case a kill can leave: step 4 fully written but not yet renamed ("4.orbax-checkpoint-tmp").
    shutil.copytree(tmp_path / "3", tmp_path / "4.orbax-checkpoint-tmp")
    (tmp_path / "9.orbax-checkpoint-tmp" / "default").mkdir(parents=True)  # a leftover no later save will reuse
    assert checkpoint.latest_step(tmp_path) == 3
    assert_same(checkpoint.restore(tmp_path, jax.eval_shape(make_state)), make_state(seed=3))
    checkpoint.save(tmp_path, 4, make_state(seed=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3", "4"]
    assert_same(checkpoint.restore(tmp_path, jax.eval_shape(make_state)), make_state(seed=4))


def test_sigkill_during_save_resumes_from_last_complete(tmp_path):
    # A real SIGKILL at the worst moment: everything of step 2 written, the final rename not yet done.
    script = textwrap.dedent(
        f"""
        import os, signal
        import jax.numpy as jnp
        from orbax.checkpoint._src.path import async_path
        from ssr_jax import checkpoint
        checkpoint.save({str(tmp_path)!r}, 1, {{"w": jnp.ones(3)}})
        async def killed(src, dst):
            os.kill(os.getpid(), signal.SIGKILL)
        async_path.rename = killed
        checkpoint.save({str(tmp_path)!r}, 2, {{"w": jnp.full(3, 2.0)}})
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "2.orbax-checkpoint-tmp").is_dir()
    assert checkpoint.latest_step(tmp_path) == 1
    np.testing.assert_array_equal(checkpoint.restore(tmp_path, {"w": jnp.zeros(3)})["w"], np.ones(3))
    checkpoint.save(tmp_path, 2, {"w": jnp.full(3, 2.0)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


def test_mismatch_names_leaf_path_and_both_shapes(tmp_path):
    checkpoint.save(tmp_path, 1, make_state(width=161))
    with pytest.raises(ValueError, match=r"params/stage_1/delta/kernel: checkpoint has shape \(2, 161, 1\), "
                                         r"model expects \(2, 91, 1\)"):
        checkpoint.restore(tmp_path, jax.eval_shape(lambda: make_state(width=91)))
    smaller = jax.eval_shape(lambda: make_state().replace(batch_stats={}))
    with pytest.raises(ValueError, match=r"batch_stats/bn/mean: in the checkpoint but not in the model"):
        checkpoint.restore(tmp_path, smaller)
    larger = {"extra": jnp.zeros(1), **jax.eval_shape(lambda: make_state().__dict__)}
    with pytest.raises(ValueError, match=r"extra: missing from the checkpoint"):
        checkpoint.restore(tmp_path, larger)


def test_file_not_found_when_nothing_to_restore(tmp_path):
    target = jax.eval_shape(make_state)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.restore(tmp_path / "missing", target)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.restore(tmp_path, target)
    checkpoint.save(tmp_path, 1, make_state())
    with pytest.raises(FileNotFoundError, match=r"no checkpoint 7 .*complete steps: \[1\]"):
        checkpoint.restore(tmp_path, target, step=7)


def test_restore_on_another_device_topology(tmp_path):
    # Saved on a device this process lacks (as a GPU-trained checkpoint read on a CPU box): the restore must still
    # place arrays on the default device rather than fail with Orbax's "Topology mismatch".
    script = textwrap.dedent(
        f"""
        import jax, jax.numpy as jnp
        from ssr_jax import checkpoint
        checkpoint.save({str(tmp_path)!r}, 1, {{"w": jax.device_put(jnp.ones(3), jax.devices()[1])}})
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    restored = checkpoint.restore(tmp_path, {"w": jax.ShapeDtypeStruct((3,), jnp.float32)})
    assert restored["w"].devices() == {jax.devices()[0]}
    np.testing.assert_array_equal(restored["w"], np.ones(3))


def test_a_step_holds_one_array_per_dtype_and_the_leaves_layout(tmp_path):
    """Orbax spends milliseconds of Python per saved array, so a step packs every leaf of a dtype into one array;
    the step's metadata lists the leaves, which is what `stored_shapes` reads."""
    import orbax.checkpoint as ocp

    state = make_state(seed=4)
    checkpoint.save(tmp_path, 1, state)
    with ocp.CheckpointManager(tmp_path, item_handlers=ocp.StandardCheckpointHandler()) as manager:
        arrays = manager.metadata(1).item_metadata.tree
    leaves = jax.tree_util.tree_leaves_with_path(state)
    dtypes = {str(np.asarray(leaf).dtype) for _, leaf in leaves}
    assert sorted(arrays) == sorted(dtypes) == ["bfloat16", "float32", "int32", "uint32"]
    assert sum(int(np.prod(array.shape)) for array in arrays.values()) == sum(np.size(leaf) for _, leaf in leaves)
    shapes = checkpoint.stored_shapes(tmp_path)
    assert len(shapes) == len(leaves) and shapes["opt_state/0/nu/stage_1/delta/kernel"] == (2, 161, 1)
    assert shapes["step"] == (2,) and shapes["key"] == (2, 2)


def test_a_step_of_the_earlier_layout_one_array_per_leaf_is_still_read(tmp_path):
    """Run directories written before the packed layout resume: their steps hold one Orbax array per leaf."""
    import orbax.checkpoint as ocp

    state = make_state(seed=5)
    with ocp.CheckpointManager(tmp_path) as manager:
        manager.save(3, args=ocp.args.StandardSave(state))
    assert checkpoint.latest_step(tmp_path) == 3
    assert checkpoint.stored_shapes(tmp_path)["params/stage_1/delta/kernel"] == (2, 161, 1)
    assert_same(checkpoint.restore(tmp_path, jax.eval_shape(make_state)), state)
    with pytest.raises(ValueError, match=r"params/stage_1/delta/kernel: checkpoint has shape \(2, 161, 1\), "
                                         r"model expects \(2, 91, 1\)"):
        checkpoint.restore(tmp_path, jax.eval_shape(lambda: make_state(width=91)))
    checkpoint.save(tmp_path, 4, make_state(seed=6))  # the next step of that run is packed
    assert_same(checkpoint.restore(tmp_path, jax.eval_shape(make_state)), make_state(seed=6))
    assert_same(checkpoint.restore(tmp_path, jax.eval_shape(make_state), step=3), state)
