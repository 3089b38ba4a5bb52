"""Process memory settings for training: malloc keeps freed memory for the next step.

Nothing here imports torch, so it can run before torch is (it need not: the settings apply to
later allocations).
"""

from __future__ import annotations

import ctypes
import os
import platform

#: Largest allocation served from malloc's heap, and most free heap memory kept, by
#: :func:`keep_freed_memory`.
KEEP_FREED_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Makes glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    glibc serves each large allocation (over 128 KiB to 32 MiB, a threshold it adjusts) with a
    fresh ``mmap`` and unmaps it when it is freed, and trims free memory off its heap. A training
    step frees and allocates the same large tensors (activations, gradients) every step, so each
    step faults all of them in again: an uncached frozen rcml-lite epoch on CPU took 2.7x as long
    (10.7 vs 3.9 s, ``benchmarks/frozen_training.py``'s pairs and batches). This serves
    allocations up to :data:`KEEP_FREED_BYTES` from the heap and keeps that much free memory in
    it; the price is a peak RSS that stays at its high-water mark (15-30% higher in that run).

    Nothing changes where the user set ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``,
    or off glibc. Safe at any time (it affects later allocations).

    Returns:
        Whether the settings were applied.

    Example:
        >>> from rcml_st.training import keep_freed_memory
        >>> keep_freed_memory() in (True, False)
        True
    """
    if any(name in os.environ for name in _MALLOC_ENV):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    )
