"""Run-directory files: atomic JSON writes, JSON-lines logs, the provenance recorded with every run, and the lock
that gives a directory to one process at a time.

Every file is written to a temporary name in the same directory and renamed into place, so a killed process leaves
either the old file or the new one, never half of one. A write that fails (a full disk, a read-only place) removes
its temporary file and raises `WorkdirError` naming the file; JSON is strict (no bare NaN or Infinity: non-finite
numbers are written as null).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import pathlib
import platform
import socket
import sys
import tempfile
from typing import IO, Any, Iterable, Iterator

from ssr_jax import environment

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy", "tensorflow-datasets")


class WorkdirError(OSError):
    """The workdir cannot be created or written; the message names the path and the fix."""


class WorkdirBusyError(WorkdirError):
    """Another process holds the directory's lock; the message names it (pid and host)."""


LOCK_NAME = ".lock"


def prepare(workdir: str | os.PathLike, *, flag: str = "--workdir") -> pathlib.Path:
    """Creates `workdir` and proves it writable before anything expensive runs; the error names `flag`, the
    command's option that chooses the directory."""
    path, what = pathlib.Path(workdir).expanduser().absolute(), "workdir" if flag == "--workdir" else "directory"
    try:
        path = path.resolve()
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise WorkdirError(f"{what} {path} is not writable ({error.strerror}); pass a writable {flag}") from None
    except RuntimeError as error:  # pathlib's symlink loop
        raise WorkdirError(f"{what} {path} cannot be resolved ({error}); pass another {flag}") from None
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A file object for writing `path`: a temporary file in its directory, renamed to `path` when the block ends.

    A target that exists and is not a regular file (a directory, a device) is refused; a failed write (or any
    exception in the block) leaves the old file untouched and removes the temporary file; an OSError becomes a
    `WorkdirError` naming `path`.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_file():  # os.replace would put a file in place of a directory or device
        raise WorkdirError(f"{path} exists and is not a regular file; pass a new file name")
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        raise


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    with atomic_file(path, "wb" if isinstance(text, bytes) else "w") as file:
        file.write(text)


def write_error(path: str | os.PathLike, error: OSError) -> WorkdirError:
    """The one-line error for a failed write of `path`: a full disk says that what was written before is intact."""
    if isinstance(error, WorkdirError):
        return error
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return WorkdirError(f"no space left on the device while writing {path}; nothing written before "
                            "is lost: free some space and rerun the same command to carry on from there")
    return WorkdirError(f"cannot write {path} ({error.strerror or error}); pass a writable place")


def strict_json(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None: JSON has no NaN or Infinity."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: strict_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(value) for value in obj]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    return json.dumps(strict_json(obj), allow_nan=False, sort_keys=True, **kwargs)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document in `path`; an unreadable one is a ValueError naming the file."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(dumps(row) + "\n" for row in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSON-lines file ([] if it is missing).

    A torn last line (a write cut short, e.g. by a full disk on a file system without atomic renames) is dropped
    with a warning; any other line that is not a JSON object is a ValueError naming the file and the line.
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines) and not path.read_bytes().endswith(b"\n"):
                print(f"warning: {path}: dropped the torn last line {number}", file=sys.stderr)
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")
        rows.append(row)
    return rows


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike, *, what: str = "") -> Iterator[None]:
    """Holds `directory`'s lock file for the `with` block, or raises `WorkdirBusyError` naming the holder at once.

    The lock is an flock on `directory/.lock` (released by the kernel when a process dies, however it dies), which
    records the holder's pid and host; the file is removed on release.
    """
    path = pathlib.Path(directory) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 300).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorkdirBusyError(f"{directory} is in use by {holder}; wait for it to end (or stop "
                                   "it), or pick another directory") from None
        # The previous holder may have removed the file between our open and lock: lock the file that is there.
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}{f' ({what})' if what else ''}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def holder(directory: str | os.PathLike) -> str | None:
    """Who holds `directory`'s lock (`exclusive`) — "pid 4242 on node7 (ssr-jax train)" — or None when no process
    does. Only reads: a read-only directory can be asked."""
    try:
        fd = os.open(pathlib.Path(directory) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 300).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)
    return None


def provenance() -> dict[str, Any]:
    """Git commit of the checkout the process loaded its code from (if any), package versions, Python and
    platform."""
    code = environment.loaded_code()
    return {
        "git_commit": code["commit"],
        "git_dirty": code["dirty"],
        "packages": environment.versions(PACKAGES),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
