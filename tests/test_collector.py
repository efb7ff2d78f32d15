"""server/collector.py: what billing-server does to the garbage collector before serving."""

from __future__ import annotations

import gc
import weakref

from server import collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_tuning_frees_start_up_garbage_freezes_the_rest_and_collects_the_youngest_generation_less_often():
    before = gc.get_threshold()
    garbage = weakref.ref(Node())  # start-up garbage: freed before the freeze, not kept for good
    try:
        collector.tune_for_serving()
        assert garbage() is None
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (collector.YOUNGEST_GENERATION_THRESHOLD, *before[1:])
        assert gc.isenabled()  # collection still runs on its own while serving
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
