"""Hand back to the operating system the heap memory that glibc's ``malloc`` keeps after torch frees tensors.

Scoring one architecture allocates and frees tens of MB of activations. glibc keeps freed blocks for reuse, and
with long-lived blocks (cached activations, results) between them its heap fragments: a process stepping
``NATCell-v0`` on the default supernet grew from about 570 MB to 1,130 MB of unique memory (USS) over 600 steps,
memory that ``malloc_trim(0)`` returned at once (measured, ``scripts/bench_memory.py``). The
:class:`~nat_gym.evaluator.SupernetEvaluator` reports every architecture it runs through the supernet to
:func:`architectures_scored`, which trims the heap every :data:`TRIM_EVERY` architectures: uncached steps took
0.999x as long with the trims as without (``scripts/bench_memory.py --time 6 --steps 40``, arms alternated in one
run). Where the C library is not glibc (macOS, Windows, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

__all__ = ["TRIM_EVERY", "architectures_scored", "release_freed_memory"]

TRIM_EVERY = 64
"""Architectures scored between two heap trims (process-wide); 0 disables trimming."""

_pending = 0
_malloc_trim: Callable[[int], int] | None | bool = False  # False: not looked up yet; None: not available


def release_freed_memory() -> bool:
    """Return the free pages of every malloc arena to the OS (glibc's ``malloc_trim(0)``).

    Returns:
        bool: ``True`` if glibc trimmed, ``False`` where ``malloc_trim`` does not exist.
    """
    global _malloc_trim
    if _malloc_trim is False:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (AttributeError, OSError, TypeError):
            _malloc_trim = None
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


def architectures_scored(count: int) -> None:
    """Note that ``count`` architectures went through a supernet; trims every :data:`TRIM_EVERY` of them."""
    global _pending
    if TRIM_EVERY <= 0:
        return
    _pending += count
    if _pending >= TRIM_EVERY:
        _pending = 0
        release_freed_memory()
