"""One process per run directory: an advisory lock on ``RUN_DIR/.lock``.

    with RunLock(run_dir):          # RunInUseError if another live process holds it
        train(...)

The lock is ``fcntl.flock`` on a file in the run directory; the file holds
the holder's process id, host and start time, which the error names. The
kernel drops a flock when its process dies, however it dies (``kill -9``
included), so a lock left by a dead process never blocks: the next process
takes it and rewrites the file. Within one process the lock is re-entrant
(the ``zoo pretrain`` command holds it and ``zoo.train.train`` takes it
again), counted per path.

``flock`` is POSIX; where ``fcntl`` does not exist (Windows) the lock is a
no-op. On network file systems ``flock`` may be local to each host.

Several processes, one run (:mod:`zoo.train.distributed`): process 0 holds
the lock for all of them. Acquiring is then a collective (every process
calls it, in the same order): process 0 tries the lock and tells the others,
so a run in use is refused by every process with the same error.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path

from zoo.errors import RunInUseError

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"

_held: dict[Path, tuple[int, int]] = {}  # path -> (file descriptor, depth): locks this process holds


class RunLock:
    """Hold ``run_dir/.lock`` for a ``with`` block (creating ``run_dir`` if needed)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = (self.run_dir / LOCK_FILE).absolute()

    def acquire(self) -> RunLock:
        if self.path in _held:
            fd, depth = _held[self.path]
            _held[self.path] = (fd, depth + 1)
            return self
        from zoo.train import distributed  # noqa: PLC0415

        if distributed.is_multiprocess():
            return self._acquire_for_all(distributed)
        return self._acquire()

    def _acquire_for_all(self, distributed) -> RunLock:
        """Process 0 takes the lock; every process learns whether it could (collectives)."""
        error = None
        if distributed.is_primary():
            try:
                self._acquire()
            except RunInUseError as e:
                error = e
        if distributed.agree(error is None):
            if not distributed.is_primary():
                _held[self.path] = (-1, 1)  # held by process 0 for this process too
            return self
        holder = distributed.allgather_json(error.holder if error is not None else {})[0]
        raise RunInUseError(self.run_dir, holder)

    def _acquire(self) -> RunLock:
        try:
            import fcntl  # noqa: PLC0415
        except ImportError:  # no flock on this platform: no lock
            _held[self.path] = (-1, 1)
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunInUseError(self.run_dir, holder) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        _held[self.path] = (fd, 1)
        return self

    def release(self) -> None:
        fd, depth = _held[self.path]
        if depth > 1:
            _held[self.path] = (fd, depth - 1)
            return
        del _held[self.path]
        if fd >= 0:
            os.close(fd)  # closing the descriptor releases the flock; the file stays (harmless)

    @property
    def held(self) -> bool:
        return self.path in _held

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
