"""Client helpers for the CLI: one Recommend call and its Rich rendering."""

from __future__ import annotations

from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc


def recommend(
    target: str,
    user_id: str,
    k: int,
    exploration_ratio: float | None = None,
    recent: list[str] | None = None,
    exclude: list[str] | None = None,
    timeout_s: float = 5.0,
) -> pb.RecommendResponse:
    request = pb.RecommendRequest(
        user_id=user_id, k=k, recent_item_ids=recent or [], exclude_item_ids=exclude or []
    )
    if exploration_ratio is not None:
        request.exploration_ratio = exploration_ratio
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.RetrievalServiceStub(channel).Recommend(request, timeout=timeout_s)


def short_name(enum_type: Any, value: int, prefix: str) -> str:
    """``ITEM_SOURCE_RELEVANCE`` → ``RELEVANCE`` (enum_type: a protobuf EnumTypeWrapper)."""
    return enum_type.Name(value).removeprefix(prefix)


def render(console: Console, user_id: str, resp: pb.RecommendResponse) -> None:
    status = short_name(pb.RecordStatus, resp.record_status, "RECORD_STATUS_")
    console.print(
        f"user [bold]{user_id}[/bold] · bundle {resp.bundle_id} · record [bold]{status}[/bold] · "
        f"novel slots {resp.novel_slots}"
        + (
            f" · {resp.unknown_recent_items} unknown recent items ignored"
            if resp.unknown_recent_items
            else ""
        )
    )
    if resp.novel_interests:
        interests = Table("cluster", "novel interest", "why", title="novel interests used")
        for n in resp.novel_interests:
            interests.add_row(str(n.cluster_id), n.label, n.rationale)
        console.print(interests)
    table = Table("#", "item", "title", "source", "cluster label", "score")
    for rank, item in enumerate(resp.items, 1):
        source = short_name(pb.ItemSource, item.source, "ITEM_SOURCE_")
        style = "magenta" if item.source == pb.ITEM_SOURCE_NOVEL_INTEREST else None
        table.add_row(
            str(rank), item.item_id, item.title, source, item.cluster_label, f"{item.score:.3f}", style=style
        )
    console.print(table)
