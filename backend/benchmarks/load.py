"""The Python load generator: C connections, each looping over its requests for a fixed
time. The fallback when wrk is not installed: it costs more CPU per request than the
servers it measures, so on a small machine it caps their figures (ratios still hold best).
"""

import asyncio
import itertools
import math
import statistics
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx2

REQUEST_TIMEOUT = 30.0
WARMUP_SECONDS = 1.0
# A hard stop: a phase never runs past its duration plus one request timeout and this.
STOP_GRACE = 5.0
MAX_REQUESTS_PER_PHASE = 5_000_000
CONNECTIONS_PER_CLIENT = 32


@dataclass(frozen=True)
class Target:
    """One request to send; a phase cycles through many, so no single row is hammered."""

    path: str
    method: str = "GET"
    token: str | None = None
    body: dict[str, Any] | None = None
    expect: int = httpx2.codes.OK

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class Phase:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # of successes, in seconds
    errors: Counter[str] = field(default_factory=Counter)
    # Requests completed (answered or failed) in each whole second since the start.
    completions: Counter[int] = field(default_factory=Counter)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def stalled_windows(self) -> int:
        """Whole seconds of the phase in which no request completed."""
        return sum(1 for second in range(int(self.seconds)) if not self.completions[second])

    def percentile_ms(self, percent: int) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[percent - 1] * 1000


async def measure(
    base_url: str,
    targets: list[Target],
    *,
    concurrency: int,
    seconds: float,
    warmup: float = WARMUP_SECONDS,
) -> Phase:
    """Warm up for `warmup` seconds on the same connections, then measure for `seconds`."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(_client(base_url, connections))
            for connections in _shares(concurrency)
        ]
        if warmup > 0:
            await _run(clients, targets, concurrency=concurrency, seconds=warmup)
        return await _run(clients, targets, concurrency=concurrency, seconds=seconds)


def _shares(concurrency: int) -> list[int]:
    """Connections per client: a pool's cost per request grows with its size, and at 256
    connections one client, not the server, would set the pace."""
    clients = math.ceil(concurrency / CONNECTIONS_PER_CLIENT)
    return [len(range(index, concurrency, clients)) for index in range(clients)]


def _client(base_url: str, connections: int) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx2.AsyncClient(
        base_url=base_url, limits=limits, timeout=httpx2.Timeout(REQUEST_TIMEOUT)
    )


async def _run(
    clients: list[httpx2.AsyncClient], targets: list[Target], *, concurrency: int, seconds: float
) -> Phase:
    phase = Phase()
    numbers = itertools.count()
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds
    began = time.perf_counter()

    async def connection(client: httpx2.AsyncClient) -> None:
        while loop.time() < stop_at:
            number = next(numbers)
            if number >= MAX_REQUESTS_PER_PHASE:
                return
            target = targets[number % len(targets)]
            started = time.perf_counter()
            try:
                response = await client.request(
                    target.method, target.path, headers=target.headers, json=target.body
                )
            except httpx2.TimeoutException:
                phase.errors["timeout"] += 1
                continue
            except httpx2.HTTPError as error:
                phase.errors[type(error).__name__] += 1
                continue
            finally:
                phase.requests += 1
                phase.completions[int(time.perf_counter() - began)] += 1
            if response.status_code == target.expect:
                phase.latencies.append(time.perf_counter() - started)
            else:
                phase.errors[f"HTTP {response.status_code}"] += 1

    started = time.perf_counter()
    tasks = [
        asyncio.create_task(connection(clients[index % len(clients)]))
        for index in range(concurrency)
    ]
    try:
        done, stalled = await asyncio.wait(tasks, timeout=seconds + REQUEST_TIMEOUT + STOP_GRACE)
    finally:
        # Stalled, or we were cancelled (Ctrl-C): none may outlive the client it uses.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    phase.seconds = time.perf_counter() - started
    if stalled:
        phase.errors["stalled"] += len(stalled)
    for task in done:
        task.result()  # a bug in the generator must not pass for a quiet server
    return phase
