"""Process-wide allocator tuning for the array-heavy backtest kernel (glibc only; elsewhere a no-op).

The kernel allocates and frees a few arrays of one float per bar for every parameter set. glibc serves blocks above
``M_MMAP_THRESHOLD`` (128 KiB until it adapts) with a fresh ``mmap`` each time, so every set pays a page fault per
4 KiB of every array: measured in a fresh Ray worker, 100,000 minor faults per 64 sets and a 3x slower search than
the same sets in a long-lived driver, whose threshold had already adapted. Fixing the thresholds keeps those arrays
on the heap, where freed blocks are reused without faulting. It costs at most ``TRIM_BYTES`` of free heap kept per
process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_BYTES", "tune_allocator"]

MMAP_THRESHOLD_BYTES = 64 << 20  # blocks below this come from the heap (a 1M-bar float64 array is 8 MiB)
TRIM_BYTES = 256 << 20  # free heap above this is returned to the OS
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned: bool | None = None


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds once per process; return whether they are set (False off glibc)."""
    global _tuned
    if _tuned is None:
        _tuned = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # musl and other libcs: nothing to tune
                return False
            _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
                mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES)
            )
    return _tuned
