"""The garbage collector's settings for a serving process (`billing-server`).

CPython's cyclic collector runs after every 700 net allocations of container objects, and each
run of an older generation walks everything in it. A 1,000-event TrackUsage allocates tens of
thousands of containers (events, rows, tuples), almost none of them in cycles (reference
counting frees them), so the collector ran dozens of times a call and kept walking the process's
start-up heap (modules, protobuf descriptors, grpcio, Peewee's models): a large share of the
call's CPU. Once the server is built, what exists is
frozen out of every collection (it lives as long as the process), and the youngest generation
is collected every 10,000 allocations: cycles are still found, a little later.
"""

from __future__ import annotations

import gc

YOUNGEST_GENERATION_THRESHOLD = 10_000


def tune_for_serving() -> None:
    """Call once, after start-up and before serving."""
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_GENERATION_THRESHOLD, older, oldest)
