"""The webhook dispatcher: runs beside the scheduler's jobs and sends due deliveries.

Every POLL_SECONDS it claims due deliveries (services/webhook_delivery.py) and hands each to a
worker thread; an endpoint has at most one call in flight in this process and is not claimed
again until it ends, so a slow or dead endpoint occupies one worker and never delays another
endpoint's deliveries. A change is normally delivered within a poll interval plus the call.

`webhook-timestamp` is the wall clock at the send (receivers compare it with theirs to refuse
replays); the injected `clock` decides what is due, so tests can move through the retry schedule.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from server.domain import webhooks as rules
from server.notifications import webhook_sender
from server.persistence import db
from server.services import webhook_delivery
from server.services.webhook_delivery import Attempt

log = logging.getLogger("billing.webhooks")

POLL_SECONDS = 0.5
WORKERS = 8


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Dispatcher:
    def __init__(
        self,
        *,
        allowed: frozenset[rules.Target],
        workers: int = WORKERS,
        clock: Callable[[], dt.datetime] = utc_now,
        post: Callable[..., rules.Outcome] = webhook_sender.post,
        rng: random.Random | None = None,
    ) -> None:
        self.allowed = allowed
        self.workers = workers
        self._clock = clock
        self._post = post
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def pump(self) -> list[Future]:
        """Claim what is due now and start sending it; returns the sends started."""
        with self._lock:
            busy = set(self._busy)
        with db.session():
            claimed = webhook_delivery.claim(self._clock(), busy=busy, limit=self.workers - len(busy))
        with self._lock:
            self._busy.update(attempt.endpoint_id for attempt in claimed)
        return [self._pool.submit(self._deliver, attempt) for attempt in claimed]

    def _deliver(self, attempt: Attempt) -> str | None:
        """One attempt and its record; None if it could not be recorded (retried after the lease)."""
        try:
            body = attempt.body.encode()
            headers = rules.headers(attempt.secrets, attempt.event_id, int(time.time()), body)
            outcome = self._post(attempt.url, headers, body, allowed=self.allowed)
            with db.session():
                status = webhook_delivery.settle(attempt, outcome, now=self._clock(), jitter=self._rng.uniform(-1, 1))
            if not outcome.succeeded:
                log.warning(
                    "webhook %s to %s failed (attempt %d, now %s): %s",
                    attempt.event_id,
                    attempt.endpoint_id,
                    attempt.attempts + 1,
                    status,
                    outcome.error,
                )
            return status
        except Exception:
            log.exception("webhook %s to %s not recorded", attempt.event_id, attempt.endpoint_id)
            return None
        finally:
            with self._lock:
                self._busy.discard(attempt.endpoint_id)

    def run(self, stop: threading.Event, interval: float = POLL_SECONDS) -> None:
        """Pump until `stop` is set, then let the calls in flight finish (each bounded by 15 s)."""
        log.info("webhook dispatcher started (%d workers)", self.workers)
        while not stop.is_set():
            try:
                self.pump()
            except Exception:
                log.exception("webhook dispatcher poll failed")
            stop.wait(interval)
        self._pool.shutdown(wait=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
