"""gRPC load. Closed loop: ``clients`` concurrent callers, each sending its next request as soon as the
previous one is answered, for a fixed time. Open loop: requests at a fixed rate, whatever the answers do.
Requests are built before the clock starts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import numpy as np
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: np.ndarray  # seconds, one per answered request

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if len(self.latencies) else float("nan")


async def run_closed_loop(send: Callable[[int], Awaitable[bool]], count: int, clients: int, seconds: float,
                          reuse: bool = True, answered: list | None = None) -> LoadResult:
    """``clients`` callers of ``send(index)`` (True: answered, False: an error), each calling again as soon as its
    call returns, over indices ``0 .. count-1`` (round and round when ``reuse``), for ``seconds``."""
    next_index, latencies, errors = 0, [], 0
    started = time.perf_counter()
    deadline = started + seconds

    async def client():
        nonlocal next_index, errors
        while time.perf_counter() < deadline:
            if next_index >= count and not reuse:
                return  # every unique request was sent
            index = next_index % count
            next_index += 1
            sent = time.perf_counter()
            if await send(index):
                latencies.append(time.perf_counter() - sent)
                if answered is not None:
                    answered.append(index)
            else:
                errors += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return LoadResult(len(latencies), errors, time.perf_counter() - started, np.asarray(latencies))


async def _closed_loop(address: str, requests: list[pb.ModelInferRequest], clients: int, seconds: float,
                       reuse: bool, metadata: tuple, answered: list | None) -> LoadResult:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        await stub.ServerLive(pb.ServerLiveRequest())

        async def send(index: int) -> bool:
            try:
                await stub.ModelInfer(requests[index], metadata=metadata, timeout=30)
                return True
            except grpc.aio.AioRpcError:
                return False

        return await run_closed_loop(send, len(requests), clients, seconds, reuse, answered)


def closed_loop(address: str, requests: list[pb.ModelInferRequest], clients: int = 8, seconds: float = 2.0,
                reuse: bool = True, metadata: tuple = (), answered: list | None = None) -> LoadResult:
    """Run the load and return throughput and latencies. ``reuse=False`` sends each request at most once
    (requests with unique ids: decisions, feedback) and stops early when they run out. ``answered`` collects
    the indices of the requests that got an answer."""
    return asyncio.run(_closed_loop(address, requests, clients, seconds, reuse, metadata, answered))


async def _open_loop(address: str, requests: list[pb.ModelInferRequest], rate: float, seconds: float,
                     answered: list | None) -> LoadResult:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        await stub.ServerLive(pb.ServerLiveRequest())
        latencies, errors, pending = [], 0, []
        started = time.perf_counter()

        async def send(index: int, due: float):
            nonlocal errors
            try:
                await stub.ModelInfer(requests[index % len(requests)], timeout=30)
                # from when the request was due, not when it went out: a stalled sender counts as latency
                latencies.append(time.perf_counter() - due)
                if answered is not None:
                    answered.append(index)
            except grpc.aio.AioRpcError:
                errors += 1

        for index in range(int(rate * seconds)):
            due = started + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.ensure_future(send(index, due)))
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    return LoadResult(len(latencies), errors, elapsed, np.asarray(latencies))


def open_loop(address: str, requests: list[pb.ModelInferRequest], rate: float, seconds: float = 2.0,
              answered: list | None = None) -> LoadResult:
    """Requests sent at a fixed ``rate`` per second whatever the answers do (an open loop, as independent users
    arrive), for ``seconds``; each latency counts from the moment its request was due."""
    return asyncio.run(_open_loop(address, requests, rate, seconds, answered))
