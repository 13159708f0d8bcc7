"""Closed-loop load from its own process: ``concurrency`` clients, each sends its next request as soon
as the previous answer arrives. Prints one JSON object (latency percentiles, RPS, status counts).

    python -m retrieval_service.bench.loadgen --target 127.0.0.1:50051 --users 10000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter

import grpc
import numpy as np

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc


async def drive(
    target: str,
    users: int,
    k: int,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
    seed: int,
    channels: int = 1,
) -> dict:
    requests = [pb.RecommendRequest(user_id=f"u{i}", k=k) for i in range(users)]
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    answered = 0  # warm-up included: the server's CPU time is read over the whole run
    # Several connections, as a fleet of frontends would open: a server running several worker
    # processes on one port (SO_REUSEPORT) balances per connection, so one channel reaches one worker.
    # A local subchannel pool per channel: channels with equal arguments would otherwise share one
    # connection.
    local = [("grpc.use_local_subchannel_pool", 1)]
    opened = [grpc.aio.insecure_channel(target, options=local) for _ in range(channels)]
    try:
        stubs = [pb_grpc.RetrievalServiceStub(c) for c in opened]
        await asyncio.gather(*(c.channel_ready() for c in opened))
        start = time.perf_counter()
        measure_from = start + warmup_s
        end = measure_from + duration_s

        async def client(worker: int) -> None:
            rng = random.Random(seed * 1000 + worker)
            stub = stubs[worker % channels]
            while True:
                request = requests[rng.randrange(users)]
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                try:
                    response = await stub.Recommend(request, timeout=timeout_s)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    response, code = None, exc.code().name
                t1 = time.perf_counter()
                nonlocal answered
                answered += response is not None
                if t0 >= measure_from:
                    codes[code] += 1
                    if response is not None:
                        latencies.append(t1 - t0)
                        statuses[pb.RecordStatus.Name(response.record_status)] += 1
                        for item in response.items:
                            sources[pb.ItemSource.Name(item.source)] += 1

        await asyncio.gather(*(client(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - measure_from
    finally:
        await asyncio.gather(*(c.close() for c in opened))
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "target": target,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "ok": len(latencies),
        "answered_total": answered,
        "errors": sum(n for c, n in codes.items() if c != "OK"),
        "codes": dict(codes),
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()),
        "record_status": dict(statuses),
        "item_sources": dict(sources),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=int, default=1, help="connections the clients share")
    a = parser.parse_args()
    result = asyncio.run(
        drive(a.target, a.users, a.k, a.concurrency, a.duration, a.warmup, a.timeout, a.seed, a.channels)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
