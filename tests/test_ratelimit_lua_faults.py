"""The Redis backend's Lua script, mutation-tested by hand (mutmut mutates Python, not the script's
text): one battery of exact checks on the shipped script, then the same battery on copies of it,
each with one fault planted at a boundary or a counter, and each copy must fail it. A fault that
no check catches fails here, naming itself."""

from __future__ import annotations

import uuid

import pytest
import redis

from server.ratelimit import redis_store
from server.ratelimit.algorithm import Quota
from server.ratelimit.redis_store import RedisRateLimiter
from stores import REDIS_URL, redis_unreachable_reason

WINDOW = redis_store.WINDOW_SECONDS

# (what the shipped script says, the fault planted in its place, what it breaks)
FAULTS = [
    ("'-inf', now - window)", "'-inf', now - window - 0.5)", "a hit exactly one window old still counts"),
    ("if count < limit and", "if count <= limit and", "one admission over the limit"),
    ("if used >= tonumber(ARGV[5])", "if used > tonumber(ARGV[5])", "one admission over the quota"),
    (
        "math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(ARGV[6]))",
        "tonumber(redis.call('GET', KEYS[3]) or '0')",
        "the floor (usage counted elsewhere) ignored",
    ),
    ("if ARGV[3] == '1' then", "if ARGV[3] ~= '2' then", "a peek consumes"),
    ("redis.call('SET', KEYS[3], used + 1,", "redis.call('SET', KEYS[3], used + 2,", "the quota counts twice"),
    ("'EX', tonumber(ARGV[7]))", "'EX', tonumber(ARGV[7]) + 60)", "the quota counter outlives its period"),
    ("    count = count + 1\n", "\n", "remaining is one too many after an admission"),
    ("math.ceil(window * 1000)", "math.ceil(window * 100)", "keys expire before the window ends"),
    ("redis.call('PEXPIRE', KEYS[2], ttl)", "redis.call('PERSIST', KEYS[2])", "the sequence key never expires"),
    (
        "redis.call('ZADD', KEYS[1], now, tostring(n))",
        "redis.call('ZADD', KEYS[1], now, tostring(now))",
        "two calls at one instant count once",
    ),
    ("reset = math.ceil(math.floor(", "reset = math.floor(math.floor(", "reset rounds down"),
    ("tonumber(t[1]) + tonumber(t[2]) / 1000000", "tonumber(t[1])", "Redis TIME loses its microseconds"),
    ("if KEYS[3] then\n  used", "if false then\n  used", "the quota is never checked"),
    ("return {allowed, count, reset, exhausted}", "return {allowed, count, reset, 0}", "exhaustion is never reported"),
]


@pytest.fixture
def make_limiter(monkeypatch):
    reason = redis_unreachable_reason()
    if reason:
        pytest.skip(reason)
    made = []

    def make(script: str = redis_store.SLIDING_WINDOW_LOG) -> RedisRateLimiter:
        monkeypatch.setattr(redis_store, "SLIDING_WINDOW_LOG", script)
        store = RedisRateLimiter(REDIS_URL, prefix=f"test:lua:{uuid.uuid4().hex[:8]}:")
        made.append(store)
        return store

    yield make
    client = redis.Redis.from_url(REDIS_URL)
    for store in made:
        for key in client.scan_iter(f"{store.prefix}*"):
            client.delete(key)
        store.close()
    client.close()


def decision(limiter, key, limit, now=None, quota=None, consume=True):
    made = limiter.hit(key, limit, now, quota=quota) if consume else limiter.peek(key, limit, now)
    return made.allowed, made.remaining, made.reset_seconds, made.quota_exhausted


def redis_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def battery(limiter: RedisRateLimiter) -> None:
    """Exact answers at every boundary the script decides; an AssertionError names the first miss."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        # The limit, exactly: 3 admitted at one instant, the 4th refused; a peek changes nothing.
        assert [decision(limiter, "w", 3, 100.0)[:2] for _ in range(3)] == [(True, 2), (True, 1), (True, 0)]
        assert decision(limiter, "w", 3, 100.0) == (False, 0, WINDOW, False)
        assert decision(limiter, "w", 3, 100.5, consume=False) == (False, 0, 60, False)
        # Reset rounds up to a whole second: 59.5 s left is 60.
        assert decision(limiter, "w", 3, 100.5, consume=False)[2] == 60
        # Exactly one window later the three are gone: the boundary instant is outside the window.
        assert decision(limiter, "w", 3, 100.0 + WINDOW - 0.25) == (False, 0, 1, False)
        assert decision(limiter, "w", 3, 100.0 + WINDOW) == (True, 2, 60, False)
        # A peek reports and admits nothing.
        assert decision(limiter, "p", 2, 10.0, consume=False) == (True, 2, 0, False)
        assert decision(limiter, "p", 2, 10.0, consume=False) == (True, 2, 0, False)
        assert client.zcard(limiter.key("p")) == 0
        # Keys expire one window after the last admission, both of them.
        limiter.hit("ttl", 5, 10.0)
        for key in (limiter.key("ttl"), limiter.key("ttl") + ":seq"):
            assert WINDOW * 1000 - 5000 < client.pttl(key) <= WINDOW * 1000
        # Quota: exactly `included` admissions counted, with its own expiry; the floor counts too.
        quota = Quota(name="q", included=2, floor=0, expires_in=90)
        assert [decision(limiter, "q", 100, 10.0, quota)[0] for _ in range(3)] == [True, True, False]
        assert decision(limiter, "q", 100, 10.0, quota) == (False, 98, 60, True)
        counter = limiter.key("q") + ":quota:q"
        assert int(client.get(counter)) == 2
        assert 85 < client.ttl(counter) <= 90
        assert decision(limiter, "f", 100, 10.0, Quota(name="f", included=3, floor=3, expires_in=60))[3] is True
        assert decision(limiter, "g", 100, 10.0, Quota(name="g", included=3, floor=2, expires_in=60))[0] is True
        assert decision(limiter, "g", 100, 10.0, Quota(name="g", included=3, floor=2, expires_in=60))[0] is False
        # Redis TIME when no `now` is given, to the microsecond.
        before = redis_time(client)
        limiter.hit("t", 5)
        after = redis_time(client)
        [(_, score)] = client.zrange(limiter.key("t"), 0, 0, withscores=True)
        assert before - 1e-6 <= score <= after + 1e-6
    finally:
        client.close()


def test_the_shipped_script_answers_every_check(make_limiter):
    battery(make_limiter())


@pytest.mark.parametrize(("shipped", "fault", "breaks"), FAULTS, ids=[f[2] for f in FAULTS])
def test_each_planted_fault_fails_a_check(make_limiter, shipped, fault, breaks):
    assert redis_store.SLIDING_WINDOW_LOG.count(shipped) == 1, "the fault no longer matches the script"
    faulty = make_limiter(redis_store.SLIDING_WINDOW_LOG.replace(shipped, fault))
    with pytest.raises(AssertionError):
        battery(faulty)
