"""The list-assembly rules as pure functions (docs/retrieval.md, "Ranking")."""

from __future__ import annotations

from retrieval_service.ranking import (
    COLD_START,
    NOVEL,
    RELEVANCE,
    assemble,
    novel_positions,
    novel_slot_count,
)


def test_slot_count_rounds_half_up_and_never_exceeds_k():
    assert novel_slot_count(10, 0.2) == 2
    assert novel_slot_count(5, 0.5) == 3  # Python's round(2.5) would give 2
    assert novel_slot_count(3, 0.1) == 0
    assert novel_slot_count(7, 1.0) == 7


def test_positions_are_distinct_and_spread():
    for n in range(1, 40):
        for m in range(1, n + 1):
            pos = novel_positions(n, m)
            assert len(set(pos)) == m and all(0 <= p < n for p in pos)
            if m < n:
                assert 0 not in pos  # the most relevant item keeps the top


def test_round_robin_over_interests_then_relevance():
    out = assemble(
        k=6,
        novel_slots=3,
        novel_lists=[[(100, 9.0), (101, 8.0)], [(200, 7.0)]],
        primary=[(1, 5.0), (2, 4.0), (3, 3.0), (4, 2.0)],
        primary_source=RELEVANCE,
        fallback=[],
        blocked=set(),
    )
    # Positions 6 * (1, 2, 3) // 4 = 1, 3, 4.
    assert [(i, s) for i, _, s in out] == [
        (1, RELEVANCE),
        (100, NOVEL),
        (2, RELEVANCE),
        (200, NOVEL),
        (101, NOVEL),
        (3, RELEVANCE),
    ]


def test_blocked_and_duplicates_skipped_short_novel_goes_to_relevance():
    out = assemble(
        k=5,
        novel_slots=3,
        novel_lists=[[(7, 1.0), (8, 1.0)]],
        primary=[(7, 9.0), (1, 8.0), (2, 7.0), (8, 6.0), (3, 5.0), (4, 4.0)],
        primary_source=RELEVANCE,
        fallback=[],
        blocked={8},
    )
    ids = [i for i, _, _ in out]
    assert ids.count(7) == 1 and 8 not in ids and len(ids) == 5
    assert [s for _, _, s in out].count(NOVEL) == 1  # only one novel candidate was usable


def test_fallback_fills_and_short_lists_stay_short():
    out = assemble(3, 0, [], [(1, 1.0)], RELEVANCE, [(1, 0.0), (5, 0.0), (6, 0.0)], blocked={5})
    assert [(i, s) for i, _, s in out] == [(1, RELEVANCE), (6, COLD_START)]
