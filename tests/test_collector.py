"""server/collector.py: what billing-server does to the garbage collector before serving."""

from __future__ import annotations

import gc

from server import collector


def test_tuning_freezes_start_up_objects_and_collects_the_youngest_generation_less_often():
    before = gc.get_threshold()
    try:
        collector.tune_for_serving()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (collector.YOUNGEST_GENERATION_THRESHOLD, *before[1:])
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # cycles made after start-up are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
