"""Keeping `make run`'s processes up: a child that exits is started again after a backoff (0.5 s,
doubling: 0.5, 1, 2, 4 s), and one that fails QUICK_FAILURES_LIMIT times in a row soon after it
starts is given up on, so a process that cannot start (a port taken, a bad setting) stops the
stack with a line after about 8 s instead of spinning. A child that ran STABLE_AFTER_S had
started well: its next exit begins the backoff again."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from collections.abc import Callable

FIRST_DELAY_S = 0.5
STABLE_AFTER_S = 10.0
QUICK_FAILURES_LIMIT = 5  # exits in a row, each within STABLE_AFTER_S of starting: given up


@dataclasses.dataclass
class RestartPolicy:
    """When to start an exited child again. Pure: the caller passes the instants (monotonic seconds)."""

    quick_failures: int = 0

    def after_exit(self, started_at: float, exited_at: float) -> float | None:
        """Seconds to wait before starting the child again, or None: give up."""
        if exited_at - started_at >= STABLE_AFTER_S:
            self.quick_failures = 0
        self.quick_failures += 1
        if self.quick_failures >= QUICK_FAILURES_LIMIT:
            return None
        return FIRST_DELAY_S * 2 ** (self.quick_failures - 1)


def exit_status(returncode: int) -> str:
    """How a process ended, as an operator reads it: "exit status 1" or "killed by SIGKILL"."""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


@dataclasses.dataclass
class Child:
    """One supervised process: how to start it, the running one, and when to start it again."""

    name: str
    spawn: Callable[[], subprocess.Popen]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # set while it waits out its backoff
    policy: RestartPolicy = dataclasses.field(default_factory=RestartPolicy)

    def start(self) -> None:
        self.process = self.spawn()
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.terminate()

    def wait(self, deadline: float) -> None:
        """Wait for the process to exit until `deadline` (monotonic), then kill it."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
