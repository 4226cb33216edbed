"""Credential throttling: fixed-window counters behind one small interface.

Callers build opaque keys ("login:account:<email>", "login:ip:<ip>") and pick a `Limit`;
`Throttle` turns counts past the limit into `RateLimitedError` (429 with Retry-After).
Every attempt is counted before it is judged (increment, then decide, in one atomic step),
so concurrent attempts can never get past a limit together; an attempt that turns out
well (the right password) may be taken back afterwards.
Counters live in process memory by default, or in Redis when `REDIS_URL` is set so that
every worker process shares them.

Keys may contain email addresses: never log them at INFO or above.
"""

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.core.codes import ErrorCode
from app.core.config import Settings
from app.core.errors import RateLimitedError, ServiceUnavailableError

logger = logging.getLogger("agentry.throttle")

THROTTLED_DETAIL = "Too many attempts; try again later"
DEFAULT_KEY_PREFIX = "agentry:throttle:"
# Login requests wait on these, so a slow Redis must fail fast rather than hold a thread.
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0
REDIS_UNAVAILABLE_DETAIL = "Redis is unavailable; try again shortly"


@dataclass(frozen=True)
class Limit:
    attempts: int  # hits the window allows
    window_seconds: int

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.window_seconds < 1:
            raise ValueError("a limit needs at least one attempt and a window of 1s or more")


@dataclass(frozen=True)
class Window:
    count: int
    resets_in: float  # seconds until the count starts again from zero


class CounterStore(Protocol):
    def get(self, key: str) -> Window:
        """The current window; a count of 0 when the key has none."""
        ...

    def increment(self, key: str, window_seconds: int) -> Window:
        """Count one, atomically; the first hit starts a fixed window that later hits
        do not extend."""
        ...

    def decrement(self, key: str) -> None:
        """Take back one hit of the current window, atomically; a window left with no
        hits is forgotten, and a key without one is left alone."""
        ...

    def reset(self, key: str) -> None: ...


@dataclass(slots=True)
class _Entry:
    count: int
    expires_at: float


class MemoryCounterStore:
    """Counters for a single process; thread-safe, with bounded memory."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # Ordered by window start, so the first entries are the oldest to evict.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Window:
        with self._lock:
            now = self._clock()
            entry = self._live_entry(key, now)
            if entry is None:
                return Window(count=0, resets_in=0.0)
            return Window(count=entry.count, resets_in=entry.expires_at - now)

    def increment(self, key: str, window_seconds: int) -> Window:
        with self._lock:
            now = self._clock()
            entry = self._live_entry(key, now)
            if entry is None:
                self._make_room(now)
                entry = _Entry(count=0, expires_at=now + window_seconds)
                self._entries[key] = entry
            entry.count += 1
            return Window(count=entry.count, resets_in=entry.expires_at - now)

    def decrement(self, key: str) -> None:
        with self._lock:
            entry = self._live_entry(key, self._clock())
            if entry is None:
                return
            entry.count -= 1
            if entry.count <= 0:
                del self._entries[key]

    def reset(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _live_entry(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _make_room(self, now: float) -> None:
        """Keep the store under `max_keys`, scanning it at most once per tenth of it."""
        if len(self._entries) < self._max_keys:
            return
        for key in [key for key, entry in self._entries.items() if entry.expires_at <= now]:
            del self._entries[key]
        # Still nearly full of live windows (a flood of distinct keys): forgetting the
        # oldest counters beats growing without bound.
        target = self._max_keys * 9 // 10
        evicted = 0
        while len(self._entries) > target:
            self._entries.popitem(last=False)
            evicted += 1
        if evicted:
            logger.warning("throttle store full; forgot %d live counters", evicted)


# INCR, then start the window only if the key has no expiry yet (what EXPIRE NX does,
# but also on Redis 6); one script, so no other client sees a key without its TTL.
_INCREMENT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {count, redis.call('PTTL', KEYS[1])}
"""

# DECR keeps the key's TTL; a key left at zero (or never there) is deleted instead, so no
# key is ever created without one.
_DECREMENT_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 1 then
  redis.call('DECR', KEYS[1])
else
  redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisCounterStore:
    """Counters shared by every process that talks to the same Redis."""

    def __init__(self, client: redis.Redis, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self._client = client
        self._prefix = key_prefix
        self._increment = client.register_script(_INCREMENT_SCRIPT)
        self._decrement = client.register_script(_DECREMENT_SCRIPT)

    def get(self, key: str) -> Window:
        name = self._prefix + key
        with _unavailable_on_error():
            pipe = self._client.pipeline(transaction=True)
            pipe.get(name)
            pipe.pttl(name)
            value, pttl_ms = pipe.execute()
        if value is None:
            return Window(count=0, resets_in=0.0)
        return Window(count=int(value), resets_in=max(int(pttl_ms), 0) / 1000)

    def increment(self, key: str, window_seconds: int) -> Window:
        with _unavailable_on_error():
            count, pttl_ms = self._increment(
                keys=[self._prefix + key], args=[window_seconds * 1000]
            )
        return Window(count=int(count), resets_in=max(int(pttl_ms), 0) / 1000)

    def decrement(self, key: str) -> None:
        with _unavailable_on_error():
            self._decrement(keys=[self._prefix + key])

    def reset(self, key: str) -> None:
        with _unavailable_on_error():
            self._client.delete(self._prefix + key)


@contextmanager
def _unavailable_on_error() -> Iterator[None]:
    # Fail closed: without its counters the throttle cannot tell an attack from a user.
    try:
        yield
    except redis.RedisError as exc:
        logger.warning("throttle store unavailable: %s", type(exc).__name__)
        raise ServiceUnavailableError(
            REDIS_UNAVAILABLE_DETAIL, code=ErrorCode.REDIS_UNAVAILABLE
        ) from exc


class Throttle:
    def __init__(self, store: CounterStore) -> None:
        self.store = store

    def consume(self, key: str, limit: Limit) -> None:
        """Count one and refuse it if it goes past `limit.attempts`.

        The count comes first, atomically, and the decision follows from it: of any
        number of concurrent attempts, at most `limit.attempts` get through. (Checking
        first and counting failures afterwards lets every attempt that arrives while the
        others are still being judged through.)"""
        window = self.store.increment(key, limit.window_seconds)
        if window.count > limit.attempts:
            self._refuse(key, window)

    def release(self, key: str) -> None:
        """Take back the hit of an attempt that went well (the right password), so that
        only failures stay counted. Attempts still being judged count meanwhile."""
        self.store.decrement(key)

    def reset(self, key: str) -> None:
        self.store.reset(key)

    @staticmethod
    def _refuse(key: str, window: Window) -> NoReturn:
        logger.debug("throttled %s for %.1fs", key, window.resets_in)
        raise RateLimitedError(THROTTLED_DETAIL, retry_after=math.ceil(window.resets_in))


def connect_redis(url: str) -> redis.Redis:
    """A client that fails within one socket timeout while Redis is down, and needs no
    restart once it is back: every command takes a pooled connection that redis-py checks
    for a closed socket first, and reconnects if it finds one."""
    # One quick retry, on ConnectionError only, covers a pooled connection dropped by a
    # Redis restart. A timeout is not retried: a frozen or unreachable Redis would only
    # time out again, doubling the wait of every request (redis-py's default also retries
    # timeouts, with backoff, for seconds).
    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


def build_throttle(config: Settings) -> Throttle:
    """Redis when `REDIS_URL` is set (counters shared across processes), else memory."""
    if config.REDIS_URL:
        return Throttle(RedisCounterStore(connect_redis(config.REDIS_URL)))
    return Throttle(MemoryCounterStore())
