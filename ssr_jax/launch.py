"""Sweep groups as cluster jobs through submitit: one job per vmapped group.

`ssr-jax sweep EXPERIMENT --workdir DIR --launcher slurm [--job key=value,...] [--wait]` expands and validates the
sweep on the login node (bad overrides fail there, before anything is queued), then submits each unfinished group as
one Slurm job (a job array when there are several). A job re-expands the experiment from its file, trains its group
exactly as `--launcher local` would, and rebuilds `DIR/results.jsonl` under a file lock, so jobs finishing together
lose no rows. The same command run again after the jobs end (or after some failed) submits only what is unfinished;
an interrupted group resumes from its checkpoint.

`--launcher submitit_local` is the same path with submitit's local executor (jobs are processes on this machine):
how the tests exercise it, and a way to try a job set-up before queueing it.

Job parameters (`--job`) go to submitit's `AutoExecutor.update_parameters`: the portable ones (`timeout_min`,
`gpus_per_node`, `cpus_per_task`, `mem_gb`, `nodes`, `tasks_per_node`, `name`) and Slurm's own with a `slurm_`
prefix (`slurm_partition`, `slurm_account`, `slurm_qos`, `slurm_constraint`, …).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import sys
import threading
import time
from typing import Any, Sequence

from ssr_jax import config_lib, sweep, workdir as workdir_lib
from ssr_jax.data import load_splits

LAUNCHERS = ("local", "slurm", "submitit_local")
DEFAULT_JOB_PARAMETERS = {"timeout_min": 24 * 60, "name": "ssr_jax"}


def parse_job_parameters(items: Sequence[str]) -> dict[str, Any]:
    """`["timeout_min=60", "slurm_partition=gpu"]` → `{"timeout_min": 60, "slurm_partition": "gpu"}`."""
    return config_lib.parse_overrides(items, flag="--job", example="timeout_min=120,slurm_partition=gpu")


def make_executor(launcher: str, folder: pathlib.Path, parameters: dict[str, Any]):
    """A submitit executor writing its logs and pickles under `folder`; unknown parameters fail here, early."""
    try:
        import submitit
    except ImportError:
        raise config_lib.ConfigError(f"--launcher {launcher} needs submitit: pip install submitit==1.5.4") from None
    cluster = {"slurm": "slurm", "submitit_local": "local"}[launcher]
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    try:
        executor.update_parameters(**{**DEFAULT_JOB_PARAMETERS, **parameters})
    except (TypeError, ValueError, NameError) as error:
        raise config_lib.ConfigError(f"--job: {error}") from None
    return executor


def run_group_job(spec: str, workdir: str, seeds: int | None, run_ids: list[str],
                  common: dict | None = None, controller: int | None = None) -> list[dict]:
    """The body of one job: the group made of `run_ids`, trained as `--launcher local` trains it. `controller`: the
    pid of the command that started this job on this machine (`submitit_local`), whose end, however it ends, stops
    the job (`stop_with`)."""
    if controller is not None:
        stop_with(controller)
    runs = {run.run_id: run for run in sweep.expand(spec, seeds=seeds, common=common)}
    missing = [run_id for run_id in run_ids if run_id not in runs]
    if missing:
        raise RuntimeError(f"{spec} no longer has runs {missing}; was the experiment file edited after submission?")
    (members,) = sweep.group_runs([runs[run_id] for run_id in run_ids], max_members=len(run_ids))
    workdir = pathlib.Path(workdir)
    sweep.run_group(members, workdir, load_splits(members[0].config.data), progress=None)
    return sweep.write_results(workdir, list(runs.values()))


def stop_with(pid: int, poll_s: float = 2.0) -> threading.Thread:
    """Ends this process once process `pid` has ended, as SIGKILL would (the group resumes from its checkpoint when
    the sweep is run again): a local job must not outlive the command that started it (an orphan trained on and
    recorded its runs after the command, killed, had reported them failed)."""
    def watch():
        while True:
            time.sleep(poll_s)
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):  # gone, or its pid reused by another user's process
                print(f"the sweep command (pid {pid}) that started this job has ended: stopping; rerun the sweep to "
                      "resume", file=sys.stderr, flush=True)
                os._exit(1)

    thread = threading.Thread(target=watch, name="stop-with-controller", daemon=True)
    thread.start()
    return thread


def _absolute_spec(spec: str) -> str:
    """Jobs may start in another directory: the experiment file is passed by absolute path."""
    path, sep, arg = spec.partition(":")
    return f"{os.path.abspath(path)}{sep}{arg}"


def submit_groups(spec: str, workdir: pathlib.Path, groups: list[list], *, seeds: int | None, launcher: str,
                  parameters: dict[str, Any], wait: bool, common: dict | None = None) -> list:
    """Submits one job per group, records them in `DIR/jobs.jsonl`; with `wait`, blocks until all have ended."""
    executor = make_executor(launcher, workdir / "jobs", parameters)
    spec = _absolute_spec(spec)
    with executor.batch():  # one array job on Slurm instead of one submission per group
        # Local jobs waited for end with this command; without --wait they are meant to outlive it.
        controller = os.getpid() if launcher == "submitit_local" and wait else None
        jobs = [executor.submit(run_group_job, spec, str(workdir), seeds, [run.run_id for run in members], common,
                                controller) for members in groups]
    records = [{"group": members[0].group, "job_id": job.job_id, "runs": [run.run_id for run in members]}
               for members, job in zip(groups, jobs)]
    workdir_lib.write_jsonl(workdir / "jobs.jsonl", workdir_lib.read_jsonl(workdir / "jobs.jsonl") + records)
    for record in records:
        print(f"submitted group {record['group']} ({len(record['runs'])} runs) as job {record['job_id']}", flush=True)
    print(f"logs in {workdir / 'jobs'}; rerun the same command to resume what did not finish, then "
          f"`ssr-jax report {workdir}`", flush=True)
    if wait:
        try:
            for record, job in zip(records, jobs):
                try:
                    job.result()
                except Exception as error:  # noqa: BLE001 — a lost job is reported; its runs stay unfinished
                    print(f"job {record['job_id']} (group {record['group']}) ended without finishing: {error}",
                          flush=True)
        except KeyboardInterrupt:
            if launcher != "submitit_local":  # cluster jobs outlive the command that waited for them
                raise KeyboardInterrupt("interrupted: the jobs go on; rerun the same command once they have ended "
                                        "to count them (and resume what did not finish)") from None
            for job in jobs:  # local jobs are this command's children: an orphan would record its run later
                job.cancel(check=False)
            raise KeyboardInterrupt(f"interrupted: stopped the {len(jobs)} local job(s); rerun the same command to "
                                    "resume them from their checkpoints") from None
    return jobs


def run_sweep(spec: str, workdir: str | pathlib.Path | None, *, launcher: str = "local",
              job_parameters: dict[str, Any] | None = None, wait: bool = False, check: bool = False,
              **sweep_options) -> list[dict]:
    """`ssr-jax sweep`: `sweep.run_sweep` in this process (launcher "local"), or one submitit job per pending group
    ("slurm", "submitit_local"); returns the rows of `results.jsonl` as they stand. `sweep_options` are
    `sweep.plan`'s (seeds, shard_spec, max_members, dry_run, common). Once the runs have ended (local, `wait`, or
    nothing left to submit), the outcome is counted as `sweep.report_tally` does (`check`: raise on failures)."""
    if launcher not in LAUNCHERS:
        raise config_lib.ConfigError(f"--launcher={launcher}: choose one of {', '.join(LAUNCHERS)}")
    if launcher == "local":
        return sweep.run_sweep(spec, workdir, check=check, **sweep_options)
    if launcher == "slurm" and shutil.which("sbatch") is None and not sweep_options.get("dry_run"):
        raise config_lib.ConfigError("--launcher slurm: this machine has no Slurm (no sbatch on PATH); run the command "
                                     "on the cluster's login node, or use --launcher local")
    # Groups are planned here but trained where the jobs run: on GPU nodes when the jobs ask for GPUs.
    backend = "gpu" if (job_parameters or {}).get("gpus_per_node") else None if launcher == "submitit_local" else "cpu"
    runs, pending, workdir, every_run = sweep.plan(spec, workdir, backend=backend, **sweep_options)
    if workdir is None:
        return []
    if pending:
        submit_groups(spec, workdir, pending, seeds=sweep_options.get("seeds"), common=sweep_options.get("common"),
                      launcher=launcher, parameters=job_parameters or {}, wait=wait)
    else:
        print(f"all {len(runs)} runs finished; nothing to submit", flush=True)
    rows = sweep.write_results(workdir, every_run)
    if wait or not pending:
        sweep.report_tally(workdir, runs, check)
    return rows
