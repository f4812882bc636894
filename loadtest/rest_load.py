"""REST load, closed loop: ``clients`` concurrent callers, each posting its next body as soon as the previous one is
answered, for a fixed time. Bodies are built before the clock starts and answers are read, not parsed, so two loads
differ only in what the server does with their bodies."""

from __future__ import annotations

import asyncio

import aiohttp

from .grpc_load import LoadResult, run_closed_loop


async def _closed_loop(url: str, bodies: list[tuple[bytes, dict]], clients: int, seconds: float) -> LoadResult:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        async def send(index: int) -> bool:
            body, headers = bodies[index]
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status == 200

        return await run_closed_loop(send, len(bodies), clients, seconds)


def rest_closed_loop(url: str, bodies: list[tuple[bytes, dict]], clients: int = 8, seconds: float = 2.0) -> LoadResult:
    """POST ``(body, headers)`` pairs to ``url`` in a closed loop; a non-200 answer counts as an error."""
    return asyncio.run(_closed_loop(url, bodies, clients, seconds))
