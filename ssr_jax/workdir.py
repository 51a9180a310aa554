"""Run-directory files: atomic JSON writes, JSON-lines logs, and the provenance recorded with every run.

Every file is written to a temporary name in the same directory and renamed into place, so a killed process leaves
either the old file or the new one, never half of one.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import tempfile
from typing import Any, Iterable

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy", "tensorflow-datasets")


class WorkdirError(OSError):
    """The workdir cannot be created or written; the message names the path and the fix."""


def prepare(workdir: str | os.PathLike) -> pathlib.Path:
    """Creates `workdir` and proves it writable before anything expensive runs."""
    path = pathlib.Path(workdir).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise WorkdirError(f"workdir {path} is not writable ({error.strerror}); pass a writable --workdir") from None
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = pathlib.Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(pathlib.Path(path).read_text())


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = pathlib.Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def provenance() -> dict[str, Any]:
    """Git commit of the checkout (if any), package versions, Python and platform."""
    repo = pathlib.Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = bool(subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True, timeout=10
        ).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
