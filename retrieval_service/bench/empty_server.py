"""The baseline: a grpc.aio server with the same RetrievalService method and an empty handler.

    python -m retrieval_service.bench.empty_server --port 50060

Same request parsing and transport as the real service, no work: its RPS is the ceiling a Python
grpc.aio handler can reach on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc


class EmptyRetrieval(pb_grpc.RetrievalServiceServicer):
    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        return pb.RecommendResponse()


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_RetrievalServiceServicer_to_server(EmptyRetrieval(), server)
    if not server.add_insecure_port(f"{host}:{port}"):
        raise OSError(f"cannot bind {host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
