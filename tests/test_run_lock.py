"""The run folder's lock: one writer at a time, never stuck after a kill."""

import os
import signal
import subprocess
import sys

import pytest

from pixelwise.run_lock import LOCK_FILENAME, RunFolderBusyError, RunLock

HOLD = """
import sys, time
from pixelwise.run_lock import RunLock
lock = RunLock(sys.argv[1], purpose="pixelwise train").acquire()
print("held", flush=True)
time.sleep(60)
"""


def hold_in_subprocess(run_dir):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    holder = hold_in_subprocess(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusyError) as refused:
            RunLock(tmp_path / "run").acquire()
        message = str(refused.value)
        assert f"process {holder.pid}" in message
        assert "pixelwise train" in message and str(tmp_path / "run") in message
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    holder = hold_in_subprocess(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / LOCK_FILENAME).exists()  # the file stays; the lock does not
    with RunLock(tmp_path / "run") as lock:
        assert lock.held


def test_released_lock_can_be_taken_again_in_the_same_process(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunFolderBusyError):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path) as again:
        assert again.held
    assert not again.held
    assert not (tmp_path / LOCK_FILENAME).exists()  # a clean release leaves no file
