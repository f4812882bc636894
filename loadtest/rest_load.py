"""REST load, closed loop: ``clients`` concurrent callers, each posting its next body as soon as the previous one is
answered, for a fixed time. Bodies are built before the clock starts and answers are read, not parsed, so two loads
differ only in what the server does with their bodies."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np

from .grpc_load import LoadResult


async def _closed_loop(url: str, bodies: list[tuple[bytes, dict]], clients: int, seconds: float) -> LoadResult:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        next_index, latencies, errors = 0, [], 0
        started = time.perf_counter()
        deadline = started + seconds

        async def client():
            nonlocal next_index, errors
            while time.perf_counter() < deadline:
                body, headers = bodies[next_index % len(bodies)]
                next_index += 1
                sent = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - sent)
                    else:
                        errors += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return LoadResult(len(latencies), errors, elapsed, np.asarray(latencies))


def rest_closed_loop(url: str, bodies: list[tuple[bytes, dict]], clients: int = 8, seconds: float = 2.0) -> LoadResult:
    """POST ``(body, headers)`` pairs to ``url`` in a closed loop; a non-200 answer counts as an error."""
    return asyncio.run(_closed_loop(url, bodies, clients, seconds))
