"""One writer per run folder: an advisory lock that a killed process cannot leave stuck.

    with RunLock("runs/voc", purpose="pixelwise train"):
        ...  # nobody else writes runs/voc meanwhile

The lock is ``flock`` on ``RUN/.lock``: the operating system drops it when the holding
process ends, however it ends (kill -9 included), so a stale lock file never blocks a
resume. While held, the file names the holder (process id, host, command, start time) so
a second writer is refused with one line saying who holds the folder. A clean release
deletes the file (a killed holder leaves it, empty of any lock); whoever locks a file
that was deleted meanwhile tries again on the new one, so two holders never coexist.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILENAME = ".lock"


class RunFolderBusyError(OSError):
    """Another process is writing the run folder (an OSError, like the EBUSY it stands for)."""


class RunLock:
    """Hold ``run_dir``'s lock for the length of a ``with`` block (or acquire/release)."""

    def __init__(self, run_dir: str | Path, *, purpose: str = "pixelwise"):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILENAME
        self.purpose = purpose
        self._descriptor: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock; RunFolderBusyError (naming the holder) while another holds it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(descriptor)
                os.close(descriptor)
                raise RunFolderBusyError(
                    f"{self.run_dir}: in use by {holder}; wait for it to finish, stop it, "
                    "or choose another --out") from None
            if _is_current(descriptor, self.path):
                break
            os.close(descriptor)  # the holder released and deleted this file: try anew
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.purpose,
                  "argv": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
        self._descriptor = descriptor
        return self

    def release(self) -> None:
        if self._descriptor is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still locked: nobody else holds this file
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        finally:
            os.close(self._descriptor)
            self._descriptor = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def _is_current(descriptor: int, path: Path) -> bool:
    """Whether ``descriptor`` is still the file at ``path`` (not one deleted since)."""
    try:
        return os.fstat(descriptor).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _describe_holder(descriptor: int) -> str:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "another process"
    return (f"{holder.get('command', 'another process')} (process {holder.get('pid', '?')} "
            f"on {holder.get('host', '?')}, started {holder.get('started', '?')})")


__all__ = ["LOCK_FILENAME", "RunFolderBusyError", "RunLock"]
