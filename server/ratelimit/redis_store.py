"""Redis backend: a ZSET of admission times per key, checked and updated by one Lua script.

The script runs atomically in Redis, so N replicas admitting concurrently for one tenant still
admit exactly `limit` in any rolling window. Keys are deterministic: `{prefix}{tenant}` (the
ZSET), `{prefix}{tenant}:seq` (a counter that makes ZSET members unique when two calls share
a timestamp) and, for a capped call, `{prefix}{tenant}:quota:{name}` (admissions in the period,
expiring at its end); the tenant sits in a hash tag so both keys land in one Redis Cluster slot. Both
expire one window after the last admission, so idle tenants cost nothing.

Clock: with `now=None` (what the server does) the script reads Redis TIME, one clock for all
replicas, so drift between replica hosts cannot widen or shrink the window. Tests pass `now`.

Redis unreachable: every operation raises LimiterUnavailable after short socket timeouts, and
for a second afterwards calls fail fast without trying Redis again (so a dead Redis costs each
call microseconds, not a timeout). The interceptor then FAILS OPEN (see server/transport/
interceptors/rate_limiting.py); the server never crashes on it.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from server.ratelimit.algorithm import WINDOW_SECONDS, Decision, LimiterUnavailable, Quota

log = logging.getLogger("billing.ratelimit")

DEFAULT_PREFIX = "billing:rl:"
RETRY_AFTER_FAILURE_SECONDS = 1.0

# KEYS: zset, seq[, quota counter]. ARGV: limit, window, consume (1/0), now ('' = Redis TIME)
# [, included, floor, quota ttl seconds]. Returns {allowed, count, reset_seconds, quota_exhausted}.
SLIDING_WINDOW_LOG = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[4])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local exhausted = 0
local used = 0
if KEYS[3] then
  used = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(ARGV[6]))
  if used >= tonumber(ARGV[5]) then exhausted = 1 end
end
local allowed = 0
if count < limit and exhausted == 0 then
  allowed = 1
  if ARGV[3] == '1' then
    if KEYS[3] then
      redis.call('SET', KEYS[3], used + 1, 'EX', tonumber(ARGV[7]))
    end
    local n = redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[1], now, tostring(n))
    count = count + 1
    local ttl = math.ceil(window * 1000)
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
local reset = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then
  reset = math.ceil(math.floor((tonumber(oldest[2]) + window - now) * 1e6 + 0.5) / 1e6)
  if reset < 0 then reset = 0 end
end
return {allowed, count, reset, exhausted}
"""


class RedisRateLimiter:
    def __init__(
        self, url: str, *, prefix: str = DEFAULT_PREFIX, window: float = WINDOW_SECONDS, timeout: float = 0.5
    ) -> None:
        self.prefix = prefix
        self._window = window
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._script = self._client.register_script(SLIDING_WINDOW_LOG)
        self._down_until = 0.0
        self._state = threading.Lock()

    def key(self, name: str) -> str:
        return f"{self.prefix}{{{name}}}"

    def _run(self, name: str, limit: int, now: float | None, consume: bool, quota: Quota | None = None) -> Decision:
        if time.monotonic() < self._down_until:
            raise LimiterUnavailable("rate-limit store unavailable")
        key = self.key(name)
        keys = [key, f"{key}:seq"]
        args: list[str | int | float] = [
            limit,
            repr(self._window),
            1 if consume else 0,
            "" if now is None else repr(now),
        ]
        if quota:
            keys.append(f"{key}:quota:{quota.name}")
            args += [quota.included, quota.floor, max(1, quota.expires_in)]
        try:
            allowed, count, reset, exhausted = self._script(keys=keys, args=args)
        except redis.RedisError as error:
            with self._state:
                first = time.monotonic() >= self._down_until
                self._down_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
            if first:
                log.warning("rate-limit store unavailable: %s", error)
            raise LimiterUnavailable("rate-limit store unavailable") from error
        return Decision(
            allowed=bool(allowed),
            limit=limit,
            remaining=max(0, limit - int(count)),
            reset_seconds=int(reset),
            quota_exhausted=bool(exhausted),
        )

    def hit(self, key: str, limit: int, now: float | None = None, quota: Quota | None = None) -> Decision:
        return self._run(key, limit, now, consume=True, quota=quota)

    def peek(self, key: str, limit: int, now: float | None = None) -> Decision:
        return self._run(key, limit, now, consume=False)

    def close(self) -> None:
        self._client.close()
