"""Final list assembly: exploration slots, interleaving, de-duplication (pure functions).

Shared by the retrieval service (online) and the offline evaluation (``serendip eval``), so both
build exactly the same lists.

Rules (also in docs/retrieval.md):
- ``novel_slots = round_half_up(k * exploration_ratio)`` when the user's record is usable.
- Novel slots are filled round robin over the interests (record order), each interest's candidates
  best first, so every novel interest is represented before any gets a second item.
- Slots the novel candidates cannot fill go to the relevance list; when that runs short too
  (small catalog, many exclusions) the cold-start list fills the rest.
- Novel items sit at evenly spread positions ``floor((i + 1) * n / (m + 1))``, i = 0..m-1: the top
  position stays with the most relevant item whenever ``m < n``.
- Nothing blocked (history, exclusions) and no item twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Candidate = tuple[int, float]  # internal item index, score
Ranked = tuple[int, float, int]  # internal item index, score, source (the caller's codes)


def novel_slot_count(k: int, exploration_ratio: float) -> int:
    """``round(k * ratio)``, halves rounded up (Python's round() would send 2.5 to 2)."""
    return min(k, math.floor(k * exploration_ratio + 0.5))


def novel_positions(n: int, m: int) -> list[int]:
    """``m`` distinct positions evenly spread over ``1..n-1`` (all of ``0..n-1`` when m >= n).

    Spacing n / (m + 1) >= 1 keeps them distinct.
    """
    if m >= n:
        return list(range(n))
    return [(i + 1) * n // (m + 1) for i in range(m)]


def pick_round_robin(
    lists: Sequence[Iterable[Candidate]], n: int, blocked: set[int], taken: set[int]
) -> list[Candidate]:
    """Up to ``n`` candidates, one from each list in turn, skipping blocked and already taken items."""
    picked: list[Candidate] = []
    active = [iter(c) for c in lists]
    while len(picked) < n and active:
        still = []
        for candidates in active:
            for item, score in candidates:
                if item not in blocked and item not in taken:
                    taken.add(item)
                    picked.append((item, score))
                    still.append(candidates)
                    break
            if len(picked) == n:
                break
        active = still
    return picked


def pick_in_order(
    candidates: Iterable[Candidate], n: int, blocked: set[int], taken: set[int]
) -> list[Candidate]:
    picked: list[Candidate] = []
    if n <= 0:
        return picked
    for item, score in candidates:
        if item not in blocked and item not in taken:
            taken.add(item)
            picked.append((item, score))
            if len(picked) == n:
                break
    return picked


def assemble(
    k: int,
    novel_slots: int,
    novel_lists: Sequence[Iterable[Candidate]],
    primary: Iterable[Candidate],
    primary_source: int,
    fallback: Iterable[Candidate],
    blocked: set[int],
    *,
    novel_source: int,
    fallback_source: int,
) -> list[Ranked]:
    """The final list of at most ``k`` items (fewer only when the candidates run out)."""
    taken: set[int] = set()
    novel = pick_round_robin(novel_lists, novel_slots, blocked, taken) if novel_slots else []
    rest = [(i, s, primary_source) for i, s in pick_in_order(primary, k - len(novel), blocked, taken)]
    if len(novel) + len(rest) < k:
        more = pick_in_order(fallback, k - len(novel) - len(rest), blocked, taken)
        rest.extend((i, s, fallback_source) for i, s in more)
    if not novel:
        return rest
    total = len(novel) + len(rest)
    out: list[Ranked] = []
    positions = set(novel_positions(total, len(novel)))
    novel_iter, rest_iter = iter(novel), iter(rest)
    for pos in range(total):
        if pos in positions:
            item, score = next(novel_iter)
            out.append((item, score, novel_source))
        else:
            out.append(next(rest_iter))
    return out
