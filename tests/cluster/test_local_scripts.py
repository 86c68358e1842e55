"""cluster/start-local.sh and stop-local.sh: stop-local ends exactly the process groups of the cluster start-local
started, and never a group a stale ``pids`` file names that is now another program's (after a reboot, or when the
nodes died on their own, a pgid may be anyone's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STOP = ROOT / "cluster" / "stop-local.sh"


def _members(pgid: int) -> list[str]:
    """The command lines of the live (not zombie) processes of process group ``pgid``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(cmdline)
    return found


def test_stop_local_skips_a_process_group_a_stale_pids_file_names(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)  # `setsid sleep 300`: someone else's group
    try:
        (tmp_path / "pids").write_text(f"head {other.pid}\n")
        stopped = subprocess.run([str(STOP), str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert f"skipped process group {other.pid}: none of its processes belongs to the cluster" in stopped.stderr
        assert other.poll() is None  # still running (it was sent SIGTERM, then SIGKILL)
        assert not (tmp_path / "pids").exists()  # the stale file is gone: start-local.sh can start again
    finally:
        other.kill()
        other.wait(timeout=10)


def test_stop_local_says_nothing_of_processes_that_end_while_it_looks(tmp_path: Path) -> None:
    """Its sweep of /proc for the cluster's strays read each process's cmdline; one that ended between the listing
    and the read (its own pipeline's, from the line before) printed "/proc/N/cmdline: No such file or directory"
    (the shell's, for the input redirection, before the 2>/dev/null after it applied), nearly every run."""
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=10)
    for _ in range(3):  # the message came on most runs, not all: three make it near certain on the old script
        (tmp_path / "pids").write_text(f"head {gone.pid}\n")  # the nodes died on their own
        stopped = subprocess.run([str(STOP), str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert (stopped.returncode, stopped.stderr) == (0, "")
        assert stopped.stdout == f"stopped the cluster in {tmp_path}\n"


@pytest.mark.cluster
def test_stop_local_ends_every_process_of_the_cluster_start_local_started() -> None:
    state = Path(tempfile.mkdtemp(prefix="vzc-", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "VELOZ_CLUSTER_AUTH": "disabled", "VELOZ_CLUSTER_DASHBOARD": "0"}
    pgids: list[int] = []
    try:
        started = subprocess.run(
            [str(ROOT / "cluster" / "start-local.sh"), str(state)], env=env, capture_output=True, text=True, timeout=120
        )
        assert started.returncode == 0, started.stderr
        pgids = [int(line.split()[1]) for line in (state / "pids").read_text().splitlines()]
        assert len(pgids) == 2 and all(_members(pgid) for pgid in pgids)
    finally:
        stopped = subprocess.run([str(STOP), str(state)], capture_output=True, text=True, timeout=60)
        left = [cmd for pgid in pgids for cmd in _members(pgid)]
        shutil.rmtree(state, ignore_errors=True)
    assert stopped.returncode == 0 and "skipped" not in stopped.stderr, stopped.stderr
    assert stopped.stdout.strip() == f"stopped the cluster in {state}"
    assert left == []
