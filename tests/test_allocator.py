"""The allocator tuning that keeps a search worker's per-set arrays on the heap instead of page-faulting fresh mmaps."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from veloz_actors._allocator import tune_allocator

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")

# What a kernel call does, in miniature: a few arrays of one float per bar (2 MiB each) made, used and freed. Each
# child process reports its minor page faults over 50 rounds after 3 warm-up rounds.
_ROUNDS = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from veloz_actors._allocator import tune_allocator
    assert tune_allocator()
for _ in range(3):
    arrays = [np.ones(1 << 18) for _ in range(4)]
    del arrays
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    arrays = [np.ones(1 << 18) for _ in range(4)]
    del arrays
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@glibc
def test_tuning_takes_and_is_idempotent() -> None:
    assert tune_allocator() is True
    assert tune_allocator() is True


@glibc
def test_tuned_process_reuses_freed_arrays_where_an_untuned_one_faults_them_in_again() -> None:
    untuned, tuned = _faults("default"), _faults("tuned")
    # untuned, glibc trims the freed 8 MiB off the heap top and faults all 2,048 pages back in every round
    assert untuned > 50 * 1_000, untuned
    assert tuned < 1_000, tuned
