"""Several devices: data parallelism (batch split, parameters replicated) and member parallelism (a sweep group's
members split across devices) give the numbers one device gives; a group larger than the device count still runs.

Four CPU devices exist only if XLA is told before JAX starts, so the checks run in a subprocess with
`--xla_force_host_platform_device_count=4` and report back as JSON.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from one_step import LOSS_RTOL, assert_same_step

REPO = pathlib.Path(__file__).resolve().parents[1]
# Batch 16 of 16 examples: one step per epoch, so an epoch's first step is the step the layouts are compared on
# (tests/one_step.py). Two epochs keep the learning rate of the first at the recipe's (decays at 1/3 and 2/3).
ONE_STEP_PER_EPOCH = {"train.batch_size": 16, "data.num_train": 16}
LEARNING_RATE = 1e-3  # the smoke config's, at step 0

SCRIPT = textwrap.dedent("""
    import functools, json, pathlib, sys
    import jax, numpy as np
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    sys.path.insert(0, "tests")
    from configs import ssrnet
    from one_step import one_step
    from ssr_jax import config_lib, parallel
    from ssr_jax.data import load_splits
    from ssr_jax.state import stack_members
    from ssr_jax.train import make_train, train_members

    workdir = pathlib.Path(sys.argv[2])
    base = config_lib.apply_overrides(ssrnet.get_config("smoke"), ONE_STEP_PER_EPOCH)
    splits = load_splits(base.data)

    def run(name, members, data, count, shard_data=False):
        # One step from the same initial state (tests/one_step.py), saved as workdir/NAME.npz.
        config = config_lib.apply_overrides(base, {"parallel.members": members, "parallel.data": data,
                                                   "parallel.shard_data": shard_data})
        mesh = parallel.make_mesh(members, data)
        trainer = make_train(config, splits, mesh=mesh)
        configs = [config_lib.apply_overrides(config, {"seed": s, "model.lambda_d": 0.2 * s}) for s in range(count)]
        padded = configs + configs[-1:] * (parallel.padded_members(count, mesh) - count)
        keys, hparams = parallel.shard_members(stack_members(padded), mesh)
        step = one_step(trainer, keys, hparams, b1=config.optim.b1,
                        place=functools.partial(parallel.shard_members, mesh=mesh))
        np.savez(workdir / f"{name}.npz", **step)
        state = parallel.shard_members(trainer.init(keys, hparams), mesh)
        kernel = state.params["stage1"]["p"]["kernel"]
        images = trainer.data["train"]["image"]
        return {**(gather_check(state, mesh) if members > 1 else {}),
                "kernel_devices": len(kernel.sharding.device_set),
                "images_per_device": [shard.data.shape[0] for shard in images.addressable_shards],
                "devices": jax.device_count()}

    def gather_check(state, mesh):
        # parallel.gather, as fetch uses it across hosts: every leaf whole, one all-gather per dtype and layout.
        leaves = [leaf for leaf in jax.tree.leaves(state) if not leaf.sharding.is_fully_replicated]
        float_leaves = [leaf for leaf in leaves if leaf.dtype == np.float32]
        gathered = parallel.gather(leaves)
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        program = jax.jit(parallel._side_by_side, out_shardings=replicated).lower(float_leaves).compile()
        return {"gathered_whole": all(np.array_equal(np.asarray(whole), np.asarray(leaf))
                                      for whole, leaf in zip(gathered, leaves)),
                "spread_leaves": len(leaves), "float_leaves": len(float_leaves),
                "float_all_gathers": program.as_text().count(" all-gather(")}

    def engine(members, count):
        # The training engine's own path: train_members pads and shards the group itself. Its first epoch's loss
        # is the loss of the one step (the parameters it starts from).
        config = config_lib.apply_overrides(base, {"parallel.members": members})
        configs = [config_lib.apply_overrides(config, {"seed": s, "model.lambda_d": 0.2 * s}) for s in range(count)]
        dirs = [workdir / "engine" / str(s) for s in range(count)]
        for d in dirs:
            d.mkdir(parents=True)
        summaries = train_members(configs, dirs, workdir / "engine", splits=splits)
        first_losses = [json.loads((d / "metrics.jsonl").read_text().splitlines()[0])["train_loss"] for d in dirs]
        return {"mae": [summary["mae"] for summary in summaries], "first_loss": first_losses}

    # "member" has 6 members (padded to 8, two per device) like the engine run, so the two share their programs.
    print(json.dumps({"single": run("single", 1, 1, 3), "data": run("data", 1, 4, 3), "member": run("member", 4, 1, 6),
                      "sharded": run("sharded", 1, 4, 3, shard_data=True), "engine6": engine(4, 6)}))
""").replace("ONE_STEP_PER_EPOCH", repr(ONE_STEP_PER_EPOCH))


# Two processes on this machine, two CPU devices each, joined by jax.distributed (gloo collectives): the multi-host
# path through the sweep engine — global arrays built from host values, member-sharded results gathered on every
# process, process-0 writes, and a resume on both processes from the checkpoint process 0 wrote (as after a kill
# during epoch 2) — then data parallelism across both hosts on a dataset split over the four devices.
MULTI_HOST_EXPERIMENT = textwrap.dedent("""
    from configs import ssrnet
    from ssr_jax import config_lib
    from ssr_jax.sweep import sweep

    def get_config(arg=None):
        return config_lib.apply_overrides(ssrnet.get_config("smoke"), ONE_STEP_PER_EPOCH)

    def get_sweep(arg=None):
        return sweep("model.lambda_d", [0.0, 0.2, 0.4])
""").replace("ONE_STEP_PER_EPOCH", repr(ONE_STEP_PER_EPOCH))

MULTI_HOST_SCRIPT = textwrap.dedent("""
    import faulthandler, functools, json, os, pathlib, shutil, signal, sys, traceback
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the fixture asks for every thread's stack on a hang
    # A failure exits at once; a normal exit would first wait minutes at jax.distributed's shutdown barrier.
    sys.excepthook = lambda *error: (traceback.print_exception(*error), sys.stderr.flush(), os._exit(1))
    import jax
    from jax.experimental import multihost_utils
    process_id, port, workdir = int(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    import numpy as np
    sys.path.insert(0, "tests")
    from one_step import one_step
    from ssr_jax import config_lib, parallel, sweep
    from ssr_jax.data import load_splits
    from ssr_jax.state import stack_members
    from ssr_jax.train import make_train, train_members

    # 3 λ_d × 3 seeds = 9 members, padded to 12 on the 4 devices of both hosts.
    def run_sweep():
        return sweep.run_sweep(str(workdir / "experiment.py"), workdir / "sweep", seeds=3, progress=False,
                               common={"parallel.members": 4})

    def table(rows):
        return sorted([row["seed"], row["overrides"]["model.lambda_d"], row["mae"], row["resumed_from_epoch"]]
                      for row in rows)

    first = run_sweep()
    if jax.process_index() == 0:  # back to the state of a kill during epoch 2: only epoch 1's checkpoint is left
        group = next((workdir / "sweep" / "groups").iterdir()) / "checkpoint"
        shutil.rmtree(group / str(max(int(step.name) for step in group.iterdir() if step.name.isdigit())))
        for run in (workdir / "sweep" / "runs").iterdir():
            shutil.rmtree(run / "checkpoint")
            (run / "summary.json").unlink()
    multihost_utils.sync_global_devices("newest checkpoint removed")
    resumed = run_sweep()

    # Data parallel over both hosts with the dataset split over the four devices: each host holds half of it.
    base = config_lib.apply_overrides(sweep.load_experiment(str(workdir / "experiment.py"))[0].get_config(), {
        "parallel.members": 1, "parallel.data": 4, "parallel.shard_data": True})
    configs = [config_lib.apply_overrides(base, {"seed": s, "model.lambda_d": 0.2 * s}) for s in range(3)]
    dirs = [workdir / "sharded" / str(s) for s in range(3)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    splits = load_splits(base.data)
    sharded = train_members(configs, dirs, workdir / "sharded", splits=splits)
    # The same members' one step through the same program (tests/one_step.py), gathered on every process.
    mesh = parallel.make_mesh(1, 4)
    keys, hparams = parallel.shard_members(stack_members(configs), mesh)
    step = one_step(make_train(base, splits, mesh=mesh), keys, hparams, b1=base.optim.b1,
                    place=functools.partial(parallel.shard_members, mesh=mesh))
    if jax.process_index() == 0:
        np.savez(workdir / "sharded_step.npz", **step)
    host = {"train": {"image": splits[0]["image"]}, "test": {}}
    placed = parallel.place_dataset(host, parallel.make_mesh(1, 4), shard=True)["train"]["image"]
    print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                      "local_devices": jax.local_device_count(), "sweep": table(first), "resumed": table(resumed),
                      "sharded_mae": [summary["mae"] for summary in sharded],
                      "sharded_first_loss": [json.loads((d / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]
                                             for d in dirs] if jax.process_index() == 0 else None,
                      "images_on_this_host": sum(shard.data.shape[0] for shard in placed.addressable_shards)}))
""")


# Gloo gives its two processes a fixed 30 s to connect, which a loaded 2-core machine (the other test worker
# compiling beside them) can miss before anything of ours has run: that infrastructure timeout, and only it, gets a
# second try on a fresh port and workdir.
GLOO_CONNECT_TIMEOUT = "Gloo context initialization failed"
ATTEMPTS = 2


def run_two_processes(tmp_path_factory):
    """(exit-ok, the two processes' stderr tails, their JSON reports or None, the workdir)."""
    import socket

    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path_factory.mktemp("multi_host")
    (workdir / "experiment.py").write_text(MULTI_HOST_EXPERIMENT)
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    logs = [tmp_path_factory.mktemp("multi_host_logs") / f"process{index}" for index in range(2)]
    processes = [subprocess.Popen([sys.executable, "-c", MULTI_HOST_SCRIPT, str(index), str(port), str(workdir)],
                                  cwd=REPO, env=env, stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w"))
                 for index, log in enumerate(logs)]
    # Watch both: a process that fails leaves the other blocked in a collective for ever, so the first failure ends
    # the run, and a run past the deadline ends with every thread's stack (faulthandler) in the failure message.
    deadline = time.monotonic() + 420
    while not all(process.poll() == 0 for process in processes):
        failed = [process for process in processes if process.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGUSR1)
            time.sleep(2)
            for process in processes:
                process.kill()
                process.wait()
            reports = "\n".join(f"--- process {index} (exit {process.returncode}):\n"
                                 f"{pathlib.Path(f'{log}.err').read_text()[-5000:]}"
                                 for index, (process, log) in enumerate(zip(processes, logs)))
            return False, f"the two-process run {'failed' if failed else 'hung'}:\n{reports}", None, workdir
        time.sleep(1)
    return True, "", [json.loads(pathlib.Path(f"{log}.out").read_text().strip().splitlines()[-1]) for log in logs], \
        workdir


@pytest.fixture(scope="module")
def multi_host(tmp_path_factory):
    for _ in range(ATTEMPTS):
        ok, failure, reports, workdir = run_two_processes(tmp_path_factory)
        if ok:
            return reports, workdir
        if GLOO_CONNECT_TIMEOUT not in failure:
            break
    pytest.fail(failure)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    workdir = tmp_path_factory.mktemp("engine")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO / ".jax_cache"), str(workdir)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    reports = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("single", "data", "member", "sharded"):
        with np.load(workdir / f"{name}.npz") as saved:
            reports[name]["step"] = dict(saved)
    return reports


def assert_same(got, want, members=3):
    assert_same_step(got["step"], want["step"], members=members, learning_rate=LEARNING_RATE)


def test_four_devices_are_there(outcomes):
    assert outcomes["single"]["devices"] == 4


def test_data_parallel_equals_one_device(outcomes):
    assert_same(outcomes["data"], outcomes["single"])
    assert outcomes["data"]["kernel_devices"] == 4  # parameters replicated on every device


def test_a_dataset_split_over_the_data_devices_trains_like_one_device(outcomes):
    """parallel.shard_data: each device holds a quarter of the 16 training images, and the step is one device's."""
    assert outcomes["data"]["images_per_device"] == [16] * 4
    assert outcomes["sharded"]["images_per_device"] == [4] * 4
    assert_same(outcomes["sharded"], outcomes["single"])


def test_member_parallel_equals_one_device_and_spreads_the_members(outcomes):
    assert_same(outcomes["member"], outcomes["single"])  # 6 members padded to 8, two per device
    assert outcomes["member"]["kernel_devices"] == 4 and outcomes["single"]["kernel_devices"] == 1


def test_a_member_sharded_state_is_gathered_whole_in_one_collective_per_dtype(outcomes):
    """parallel.gather (what fetch does to arrays spread over hosts, for checkpoints and summaries): every leaf
    of the member-sharded state comes back whole, and the float32 leaves — every parameter, statistic and Adam
    moment — take one all-gather, not one each."""
    member = outcomes["member"]
    assert member["gathered_whole"] and member["float_leaves"] > 100 and member["spread_leaves"] > member[
        "float_leaves"] - 1
    assert member["float_all_gathers"] == 1


def test_a_group_with_more_members_than_devices_still_runs(outcomes):
    """Six members on four devices (padded to eight) through the training engine: all finish, and the first three
    start from the single-device run's members (their first epoch's loss is that one step's)."""
    engine = outcomes["engine6"]
    assert len(engine["mae"]) == 6 and all(np.isfinite(engine["mae"]))
    np.testing.assert_allclose(engine["first_loss"][:3], outcomes["single"]["step"]["loss"], rtol=LOSS_RTOL)


def test_two_processes_sweep_resume_and_train_on_sharded_data_like_one_device(multi_host, outcomes):
    """jax.distributed across two processes (2 devices each). A sweep of 9 members (3 λ_d × 3 seeds), padded to 12
    and split over the devices of both hosts: process 0 alone writes the results, and its members start from the
    single-device run's (their first epoch's loss is that one step's); deleting the newest checkpoint and the runs'
    final files (a kill during epoch 2) and sweeping again resumes on both processes from epoch 1 to the same
    numbers (the same program: exact up to the write's rounding). Then data parallelism across the hosts, each
    holding half of the dataset, takes the single-device step."""
    reports, workdir = multi_host
    assert sorted(report["process"] for report in reports) == [0, 1]
    assert all(report["devices"] == 4 and report["local_devices"] == 2 for report in reports)
    writer = next(report for report in reports if report["process"] == 0)
    # Every process returns process 0's rows (the others read the run directories once process 0 has written them).
    assert [report["sweep"] for report in reports if report["process"] == 1] == [writer["sweep"]]
    assert len(writer["sweep"]) == 9 and {row[3] for row in writer["sweep"]} == {0}
    results = [json.loads(line) for line in (workdir / "sweep" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 9 and all(row["status"] == "ok" for row in results)
    single = dict(zip([(s, round(0.2 * s, 1)) for s in range(3)], outcomes["single"]["step"]["loss"]))
    compared = 0
    for row in results:
        key = (row["seed"], row["overrides"]["model.lambda_d"])
        if key in single:  # the single-device run's three (seed, λ_d) pairs
            metrics = (workdir / "sweep" / "runs" / row["run_id"] / "metrics.jsonl").read_text().splitlines()
            assert json.loads(metrics[0])["train_loss"] == pytest.approx(single[key], rel=LOSS_RTOL)
            compared += 1
    assert compared == 3
    assert [row[3] for row in writer["resumed"]] == [1] * 9
    np.testing.assert_allclose([row[2] for row in writer["resumed"]], [row[2] for row in writer["sweep"]], rtol=1e-5)
    for report in reports:
        assert report["images_on_this_host"] == 8 and np.isfinite(report["sharded_mae"]).all()
    np.testing.assert_allclose(writer["sharded_first_loss"], outcomes["single"]["step"]["loss"], rtol=LOSS_RTOL)
    with np.load(workdir / "sharded_step.npz") as saved:
        assert_same_step(dict(saved), outcomes["single"]["step"], members=3, learning_rate=LEARNING_RATE)
