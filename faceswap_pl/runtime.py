"""Process settings that make CPU training and inference faster without changing a single number.

:func:`retain_freed_memory`: glibc's ``malloc`` serves every block above its mmap threshold (128 KiB, rising
with use to at most 32 MiB) with a fresh ``mmap`` and gives it back to the kernel on ``free``. A GHOST-size
step allocates and frees gigabytes of such blocks (a 64-channel 256-px activation at batch 2 is 33.5 MB), so
the kernel zeroes and maps every page again each time: on a 2-core machine the plain loop spends about a
third of its time in these page faults (``benchmarks/profile_step.py`` counts them). Raising the thresholds
keeps freed memory in the process's heap for the next allocation. The values computed are the same; the
process's peak resident memory can grow by what the heap cannot reuse (measured beside the speed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
RETAIN_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 1 GiB of free heap stays mapped

_retained = False


def retain_freed_memory() -> bool:
    """Keep freed memory in the heap for reuse instead of returning it to the kernel (glibc on Linux).

    Process-wide and idempotent. Returns whether the setting is in force; False where the C library has
    no ``mallopt`` or refuses the values (musl, macOS, Windows), which changes nothing else.
    """
    global _retained
    if _retained:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _retained = mallopt(M_MMAP_THRESHOLD, RETAIN_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, RETAIN_BYTES) == 1
    return _retained


def memory_retained() -> bool:
    """Whether :func:`retain_freed_memory` is in force in this process."""
    return _retained
