"""gRPC servicers: request validation, deadlines, admin calls; the work itself is the recommender's."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc

from retrieval_service.batcher import DeadlineExpired, MicroBatcher
from retrieval_service.compute import Answer, Compute, ComputeUnavailable
from retrieval_service.config import RetrievalConfig
from retrieval_service.reload import BundleReloader
from retrieval_service.validation import InvalidField, Query, parse_batch, parse_request
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.bundle import BundleError


def _serialize(answer: Answer) -> bytes:
    # A worker process sends its responses serialised already: hand them to gRPC as they are.
    return answer if isinstance(answer, bytes) else answer.SerializeToString()


def add_retrieval_servicer(servicer: RetrievalServicer, server: grpc.aio.Server) -> None:
    """As the generated ``add_RetrievalServiceServicer_to_server``, but Recommend may answer bytes."""
    service = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
    handlers = {
        "Recommend": grpc.unary_unary_rpc_method_handler(
            servicer.Recommend,
            request_deserializer=pb.RecommendRequest.FromString,
            response_serializer=_serialize,
        ),
        "BatchRecommend": grpc.unary_unary_rpc_method_handler(
            servicer.BatchRecommend,
            request_deserializer=pb.BatchRecommendRequest.FromString,
            response_serializer=pb.BatchRecommendResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    def __init__(self, batcher: MicroBatcher[Query, Answer], cfg: RetrievalConfig) -> None:
        self.batcher = batcher
        self.cfg = cfg

    async def Recommend(self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext) -> Answer:
        try:
            query = parse_request(request, self.cfg)
        except InvalidField as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return await self._run(query, context)

    async def BatchRecommend(
        self, request: pb.BatchRecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchRecommendResponse:
        try:
            queries = parse_batch(request, self.cfg)
        except InvalidField as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        # Submitted together, they land in the same micro-batch (one Redis round trip, one model call).
        results = await asyncio.gather(*(self._run(q, context) for q in queries))
        response = pb.BatchRecommendResponse()
        for answer in results:
            if isinstance(answer, bytes):
                response.responses.add().MergeFromString(answer)
            else:
                response.responses.append(answer)
        return response

    async def _run(self, query: Query, context: grpc.aio.ServicerContext) -> Answer:
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            return await self.batcher.submit(query, deadline)
        except DeadlineExpired:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while queued")
        except ComputeUnavailable as exc:  # a worker died; it is being restarted: try again
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        raise AssertionError("unreachable: abort raises")


class AdminServicer(pb_grpc.RetrievalAdminServiceServicer):
    def __init__(self, reloader: BundleReloader, compute: Compute) -> None:
        self.reloader = reloader
        self.compute = compute

    async def ReloadBundle(
        self, request: pb.ReloadBundleRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadBundleResponse:
        try:
            result = await self.reloader.reload(Path(request.path) if request.path else None)
        except BundleError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"bundle refused: {exc}")
        return pb.ReloadBundleResponse(
            bundle_id=result.bundle_id,
            previous_bundle_id=result.previous_bundle_id,
            changed=result.changed,
            load_seconds=result.load_seconds,
        )

    async def GetServingInfo(
        self, request: pb.GetServingInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServingInfo:
        info = self.compute.info
        return pb.ServingInfo(
            bundle_id=info.bundle_id,
            bundle_path=str(info.path),
            n_items=info.n_items,
            n_clusters=info.n_clusters,
            index_device=info.index_device,
            dim=info.dim,
        )
