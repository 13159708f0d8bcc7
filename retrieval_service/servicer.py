"""gRPC servicers: request validation, deadlines, admin calls; the work itself is the recommender's."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc

from retrieval_service.batcher import DeadlineExpired, MicroBatcher
from retrieval_service.config import RetrievalConfig
from retrieval_service.recommender import BundleHolder
from retrieval_service.reload import BundleReloader
from retrieval_service.validation import InvalidField, Query, parse_batch, parse_request
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.bundle import BundleError


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    def __init__(self, batcher: MicroBatcher[Query, pb.RecommendResponse], cfg: RetrievalConfig) -> None:
        self.batcher = batcher
        self.cfg = cfg

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
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
        return pb.BatchRecommendResponse(responses=results)

    async def _run(self, query: Query, context: grpc.aio.ServicerContext) -> pb.RecommendResponse:
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            return await self.batcher.submit(query, deadline)
        except DeadlineExpired:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while queued")
            raise  # unreachable: abort raises


class AdminServicer(pb_grpc.RetrievalAdminServiceServicer):
    def __init__(self, reloader: BundleReloader, holder: BundleHolder) -> None:
        self.reloader = reloader
        self.holder = holder

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
        sb = self.holder.current
        return pb.ServingInfo(
            bundle_id=sb.bundle_id,
            bundle_path=str(sb.path),
            n_items=sb.n_items,
            n_clusters=sb.n_clusters,
            index_device=sb.index.device,
            dim=sb.dim,
        )
