"""glibc malloc settings for a process that moves every byte through a few threads.

Theory of operation. A session hands file data between threads in pieces of 64 KiB to
a few MiB (store range reads, runs of blocks, token and frame batches), each allocated
in one thread and freed in another, a GiB of them per GiB transferred. Left to its
defaults glibc serves allocations above its mmap threshold (128 KiB, raised on the fly
to the largest size freed so far) with a fresh mmap, and trims a heap whose free top
exceeds twice that: either way the next piece comes from new pages, and every page
costs a fault and a zeroing. A 1 GiB send from a local store to a null stream spent
~0.4 of its 1.0 CPU-s in page faults; with the thresholds fixed below it took 0.6.

- `M_MMAP_THRESHOLD` 4 MiB: only larger allocations (16 MiB packs) are mmapped; fixing
  it also turns off the dynamic adjustment.
- `M_TRIM_THRESHOLD` 16 MiB: a heap keeps up to that much free memory at its top for
  the next pieces instead of returning it at once (trimming at 4 MiB still cost 0.15
  CPU-s per GiB).
- `M_ARENA_MAX` 2: with glibc's default of 8 arenas per core, pieces freed by other
  threads fragmented the arenas: a 6 GiB push grew by ~10 MiB of RSS per GiB, and
  stayed flat at ~175 MiB with two (bench/volume_push.py).

`tune_malloc` runs once, before the process starts its threads (arenas are capped for
those created afterwards). A no-op where libc is not glibc.
"""

from __future__ import annotations

import ctypes

__all__ = ["tune_malloc"]

# glibc malloc.h parameter numbers
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20
ARENAS = 2


def tune_malloc() -> None:
    """Apply the settings above to this process (see the module docstring)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    for parameter, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_ARENA_MAX, ARENAS),
    ):
        mallopt(parameter, value)
