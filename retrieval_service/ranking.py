"""Final list assembly with the wire's item sources; the rules live in ``serendip.ranking``
(shared with the offline evaluation) and are documented there and in docs/retrieval.md."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from serendip import ranking as _core
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.ranking import (
    Candidate,
    Ranked,
    novel_positions,
    novel_slot_count,
    pick_in_order,
    pick_round_robin,
)

__all__ = [
    "COLD_START",
    "NOVEL",
    "RELEVANCE",
    "Candidate",
    "Ranked",
    "assemble",
    "novel_positions",
    "novel_slot_count",
    "pick_in_order",
    "pick_round_robin",
]

RELEVANCE = pb.ITEM_SOURCE_RELEVANCE
NOVEL = pb.ITEM_SOURCE_NOVEL_INTEREST
COLD_START = pb.ITEM_SOURCE_COLD_START


def assemble(
    k: int,
    novel_slots: int,
    novel_lists: Sequence[Iterable[Candidate]],
    primary: Iterable[Candidate],
    primary_source: int,
    fallback: Iterable[Candidate],
    blocked: set[int],
) -> list[Ranked]:
    return _core.assemble(
        k,
        novel_slots,
        novel_lists,
        primary,
        primary_source,
        fallback,
        blocked,
        novel_source=NOVEL,
        fallback_source=COLD_START,
    )
