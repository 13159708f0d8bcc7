"""Server interceptor for the standard gRPC metrics (go-grpc-prometheus names and labels).

``grpc_server_started_total``, ``grpc_server_handled_total{grpc_code}`` and
``grpc_server_handling_seconds`` with ``grpc_type``, ``grpc_service``, ``grpc_method``. Only unary
calls are wrapped (every method of ours is unary; streaming ones such as health Watch and
reflection pass through uncounted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import grpc

from retrieval_service.metrics import RetrievalMetrics


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: RetrievalMetrics) -> None:
        self.metrics = metrics
        # Per method: (the service's handler, our wrapper). The server hands back the same handler
        # object for a method on every call, so the wrapper — and the metric children it binds —
        # is built once, not per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        bound = self._bind(method)
        inner = handler.unary_unary

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, latency, handled, labels = bound
            started.inc()
            t0 = perf_counter()
            code = grpc.StatusCode.OK
            try:
                response = await inner(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                remaining = context.time_remaining()
                expired = remaining is not None and remaining <= 0
                code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                raise
            except Exception:
                code = grpc.StatusCode.UNKNOWN
                raise
            finally:
                latency.observe(perf_counter() - t0)
                child = handled.get(code)
                if child is None:
                    child = handled[code] = self.metrics.grpc_handled.labels("unary", *labels, code.name)
                child.inc()

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _bind(self, full_method: str) -> tuple[Any, Any, dict[grpc.StatusCode, Any], tuple[str, str]]:
        """The method's started/latency children and a code → handled-child cache: a call does no
        label lookups."""
        service, _, method = full_method.lstrip("/").rpartition("/")
        labels = (service, method)
        return (
            self.metrics.grpc_started.labels("unary", *labels),
            self.metrics.grpc_handling_seconds.labels("unary", *labels),
            {},
            labels,
        )
