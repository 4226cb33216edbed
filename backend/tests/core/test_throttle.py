"""The throttle's counters: the same behaviour from the memory and the Redis backend.

Redis comes from TEST_REDIS_URL (default: database 15 on 127.0.0.1); each test uses its
own key prefix and deletes its keys. Without Redis the Redis cases skip, or fail in CI.
"""

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import redis

from app.core.config import Settings
from app.core.errors import RateLimitedError, ServiceUnavailableError
from app.core.throttle import (
    THROTTLED_DETAIL,
    CounterStore,
    Limit,
    MemoryCounterStore,
    RedisCounterStore,
    Throttle,
    Window,
    build_throttle,
    connect_redis,
)

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    store: CounterStore
    advance: Callable[[float], None]  # let time pass: a fake clock, or a real wait


@pytest.fixture
def redis_store(redis_client: redis.Redis, key_prefix: str) -> Iterator[RedisCounterStore]:
    yield RedisCounterStore(redis_client, key_prefix=key_prefix)
    keys = list(redis_client.scan_iter(match=key_prefix + "*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        clock = FakeClock()
        return Backend(MemoryCounterStore(clock=clock), advance=clock.advance)
    return Backend(request.getfixturevalue("redis_store"), advance=time.sleep)


@pytest.fixture
def store(backend: Backend) -> CounterStore:
    return backend.store


@pytest.fixture
def throttle(store: CounterStore) -> Throttle:
    return Throttle(store)


def retry_after(exc: pytest.ExceptionInfo[RateLimitedError]) -> int:
    return int(exc.value.headers["Retry-After"])


class TestCounterStore:
    def test_absent_key_has_no_count(self, store: CounterStore) -> None:
        assert store.get("nobody") == Window(count=0, resets_in=0.0)

    def test_counts_accumulate_within_the_window(self, store: CounterStore) -> None:
        counts = [store.increment("k", 60).count for _ in range(3)]
        window = store.get("k")
        assert counts == [1, 2, 3]
        assert window.count == 3
        assert 59 < window.resets_in <= 60

    def test_later_hits_do_not_extend_the_window(self, backend: Backend) -> None:
        first = backend.store.increment("k", 60)
        backend.advance(0.05)
        second = backend.store.increment("k", 60)
        assert second.count == 2
        assert second.resets_in <= first.resets_in - 0.04

    def test_keys_are_independent(self, store: CounterStore) -> None:
        store.increment("a", 60)
        store.increment("a", 60)
        store.increment("b", 60)
        store.reset("a")
        assert store.get("a").count == 0
        assert store.get("b").count == 1

    def test_concurrent_increments_are_all_counted(self, store: CounterStore) -> None:
        threads, per_thread = 8, 50
        start = threading.Barrier(threads)

        def worker() -> list[int]:
            start.wait()
            return [store.increment("shared", 60).count for _ in range(per_thread)]

        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(worker) for _ in range(threads)]
            results = [count for future in futures for count in future.result()]
        assert store.get("shared").count == threads * per_thread
        # Each increment saw its own count: none was lost or doubled.
        assert sorted(results) == list(range(1, threads * per_thread + 1))


class TestThrottle:
    LIMIT = Limit(attempts=3, window_seconds=60)

    def test_consume_allows_exactly_the_attempts(
        self, throttle: Throttle, store: CounterStore
    ) -> None:
        for _ in range(self.LIMIT.attempts):
            throttle.consume("recovery:email:a@example.com", self.LIMIT)

        with pytest.raises(RateLimitedError) as exc:
            throttle.consume("recovery:email:a@example.com", self.LIMIT)
        assert exc.value.status_code == 429
        assert exc.value.detail == THROTTLED_DETAIL
        assert 1 <= retry_after(exc) <= 60
        assert store.get("recovery:email:a@example.com").count == self.LIMIT.attempts + 1

    def test_concurrent_consumers_never_pass_the_limit_together(self, throttle: Throttle) -> None:
        threads = 40
        start = threading.Barrier(threads)

        def attempt() -> bool:
            start.wait()
            try:
                throttle.consume("login:account:a@example.com", self.LIMIT)
            except RateLimitedError:
                return False
            return True

        with ThreadPoolExecutor(max_workers=threads) as pool:
            admitted = [f.result() for f in [pool.submit(attempt) for _ in range(threads)]]
        assert admitted.count(True) == self.LIMIT.attempts

    def test_release_takes_back_one_hit(self, throttle: Throttle, store: CounterStore) -> None:
        for _ in range(self.LIMIT.attempts):
            throttle.consume("login:ip:10.0.0.1", self.LIMIT)
        throttle.release("login:ip:10.0.0.1")
        assert store.get("login:ip:10.0.0.1").count == self.LIMIT.attempts - 1
        throttle.consume("login:ip:10.0.0.1", self.LIMIT)  # room for one more
        with pytest.raises(RateLimitedError):
            throttle.consume("login:ip:10.0.0.1", self.LIMIT)

    def test_release_forgets_an_emptied_window_and_ignores_absent_keys(
        self, throttle: Throttle, store: CounterStore
    ) -> None:
        throttle.consume("k", self.LIMIT)
        throttle.release("k")
        throttle.release("k")
        throttle.release("never-seen")
        assert store.get("k") == Window(count=0, resets_in=0.0)
        assert store.get("never-seen").count == 0
        throttle.consume("k", self.LIMIT)
        assert store.get("k").count == 1

    def test_reset_clears_the_count(self, throttle: Throttle, store: CounterStore) -> None:
        for _ in range(self.LIMIT.attempts):
            throttle.consume("k", self.LIMIT)
        throttle.reset("k")
        assert store.get("k").count == 0
        throttle.consume("k", self.LIMIT)

    def test_limits_are_per_key(self, throttle: Throttle) -> None:
        for _ in range(self.LIMIT.attempts):
            throttle.consume("login:ip:10.0.0.1", self.LIMIT)
        throttle.consume("login:ip:10.0.0.2", self.LIMIT)
        with pytest.raises(RateLimitedError):
            throttle.consume("login:ip:10.0.0.1", self.LIMIT)

    def test_the_window_expires(self, backend: Backend) -> None:
        # One second is the shortest window Redis can hold; the only long real wait.
        limit = Limit(attempts=2, window_seconds=1)
        throttle = Throttle(backend.store)
        throttle.consume("k", limit)
        throttle.consume("k", limit)
        with pytest.raises(RateLimitedError) as exc:
            throttle.consume("k", limit)
        assert retry_after(exc) == 1

        backend.advance(1.1)
        assert backend.store.get("k").count == 0
        throttle.consume("k", limit)
        assert backend.store.get("k").count == 1


class TestMemoryCounterStore:
    def test_window_is_fixed_from_the_first_hit(self) -> None:
        clock = FakeClock()
        store = MemoryCounterStore(clock=clock)
        store.increment("k", 10)
        clock.advance(6)
        assert store.increment("k", 10) == Window(count=2, resets_in=4.0)
        clock.advance(4)
        assert store.get("k").count == 0

    def test_expired_windows_are_pruned_when_full(self) -> None:
        clock = FakeClock()
        store = MemoryCounterStore(clock=clock, max_keys=10)
        for n in range(10):
            store.increment(f"old{n}", 5)
        clock.advance(5)
        store.increment("new", 5)
        assert len(store) == 1

    def test_live_windows_are_evicted_oldest_first_past_the_cap(self) -> None:
        store = MemoryCounterStore(clock=FakeClock(), max_keys=10)
        for n in range(25):
            store.increment(f"k{n}", 60)
        assert len(store) <= 10
        assert store.get("k0").count == 0
        assert store.get("k24").count == 1


class TestRedisCounterStore:
    def test_keys_live_under_the_prefix_with_a_ttl(
        self, redis_store: RedisCounterStore, redis_client: redis.Redis, key_prefix: str
    ) -> None:
        redis_store.increment("login:ip:10.0.0.1", 60)
        assert redis_client.get(key_prefix + "login:ip:10.0.0.1") == b"1"
        assert 0 < redis_client.ttl(key_prefix + "login:ip:10.0.0.1") <= 60

    def test_decrement_keeps_the_window_and_deletes_an_empty_key(
        self, redis_store: RedisCounterStore, redis_client: redis.Redis, key_prefix: str
    ) -> None:
        redis_store.increment("k", 60)
        redis_store.increment("k", 60)
        redis_store.decrement("k")
        assert redis_client.get(key_prefix + "k") == b"1"
        assert 0 < redis_client.ttl(key_prefix + "k") <= 60
        redis_store.decrement("k")
        redis_store.decrement("k")
        assert redis_client.exists(key_prefix + "k") == 0

    def test_unreachable_redis_is_service_unavailable(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        store = RedisCounterStore(connect_redis(f"redis://127.0.0.1:{closed_port}/0"))
        with pytest.raises(ServiceUnavailableError):
            store.increment("k", 60)
        with pytest.raises(ServiceUnavailableError):
            store.get("k")


class TestBuildThrottle:
    def test_memory_without_redis_url(self) -> None:
        throttle = build_throttle(Settings(_env_file=None, REDIS_URL=None))
        assert isinstance(throttle.store, MemoryCounterStore)

    def test_redis_with_redis_url(self) -> None:
        throttle = build_throttle(Settings(_env_file=None, REDIS_URL=TEST_REDIS_URL))
        assert isinstance(throttle.store, RedisCounterStore)


def test_limit_rejects_empty_limits() -> None:
    with pytest.raises(ValueError, match="at least one attempt"):
        Limit(attempts=0, window_seconds=60)
