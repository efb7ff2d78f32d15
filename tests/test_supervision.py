"""The supervisor's restart rule: a doubling backoff, reset by a run that lasted, and a child
that keeps failing as it starts is given up on."""

from __future__ import annotations

from server.supervision import (
    FIRST_DELAY_S,
    QUICK_FAILURES_LIMIT,
    STABLE_AFTER_S,
    RestartPolicy,
    exit_status,
)


def test_quick_failures_back_off_doubling_then_give_up():
    policy = RestartPolicy()
    delays = [policy.after_exit(0.0, 1.0) for _ in range(QUICK_FAILURES_LIMIT)]
    assert delays == [0.5, 1.0, 2.0, 4.0, None]


def test_a_run_that_lasted_starts_the_backoff_over():
    policy = RestartPolicy()
    for _ in range(QUICK_FAILURES_LIMIT - 1):
        policy.after_exit(0.0, 1.0)
    assert policy.after_exit(100.0, 100.0 + STABLE_AFTER_S) == FIRST_DELAY_S
    assert policy.after_exit(0.0, 1.0) == FIRST_DELAY_S * 2


def test_exit_status_names_the_signal():
    assert (exit_status(-9), exit_status(1), exit_status(0)) == ("killed by SIGKILL", "exit status 1", "exit status 0")
