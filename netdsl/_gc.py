"""`paused()`: the cyclic garbage collector off while the front end builds a large spec.

Parsing, elaboration and lowering allocate many small objects and free none of them, so every
collection the allocations trigger scans a growing heap for nothing: on 8,000-layer specs that
made the cost per layer 1.7x that of 1,000-layer ones (bench/bench_parse.py). With the collector
paused the cost per layer is flat. Garbage with cycles is collected as usual afterwards.
"""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def paused():
    """Pause the cyclic GC for the duration (re-entrant: an inner pause leaves it to the outer)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
