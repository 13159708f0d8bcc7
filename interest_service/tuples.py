"""Cluster-tuple mode: one LLM proposal per frequent tuple of recent clusters, shared by its users.

A user's tuple is the sorted set of their ``tuple_size`` most recent distinct clusters. Tuples shared
by at least ``tuple_min_users`` selected users get one LLM call each, with a prompt built from the
tuple's clusters (their most engaged items stand in for the history); covered users are served from
that table — minus clusters already in their own history — and everyone else gets a per-user call.
LLM cost then grows with distinct tuples, not users. The table is kept per (bundle, model) under the
state directory and reused by later runs.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from interest_service.answer import AnswerError, ValidPick, parse_proposal, validate_picks
from interest_service.catalog import Catalog, UserContext

if TYPE_CHECKING:
    from interest_service.engine import InterestEngine
    from serendip.bundle import Bundle

Key = tuple[int, ...]


def tuple_key(user: UserContext, size: int) -> Key | None:
    if len(user.recent_clusters) < size:
        return None
    return tuple(sorted(user.recent_clusters[:size]))


@dataclass
class TupleTable:
    size: int
    table: dict[Key, list[ValidPick]] = field(default_factory=dict)
    calls: int = 0  # LLM calls made to fill the table in this process
    hits: int = 0
    misses: int = 0

    def lookup(self, user: UserContext, catalog: Catalog) -> list[ValidPick] | None:
        key = tuple_key(user, self.size)
        picks = self.table.get(key) if key is not None else None
        if picks is None:
            self.misses += 1
            return None
        own = [p for p in picks if p.cluster_id not in user.clusters]
        if not own:
            self.misses += 1
            return None
        self.hits += 1
        return own

    @staticmethod
    def pseudo_user(key: Key, catalog: Catalog, bundle: Bundle, per_cluster: int = 2) -> UserContext:
        """A stand-in history: the most engaged items of each cluster of the tuple."""
        items: list[str] = []
        popularity = bundle.popularity
        for c in key:
            members = catalog.taxonomy.members(c)
            best = members[popularity[members].argsort()[::-1][:per_cluster]]
            items += [str(bundle.item_ids[i]) for i in best]
        user = UserContext.build("tuple:" + "-".join(map(str, key)), items, catalog, len(key))
        user.recent_clusters = list(key)
        return user

    @classmethod
    def build(
        cls,
        engine: InterestEngine,
        users: list[UserContext],
        path: Path | None = None,
    ) -> TupleTable:
        rcfg = engine.cfg.refresh
        table = cls(size=rcfg.tuple_size)
        if path and path.is_file():
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("size") == rcfg.tuple_size:
                for k, picks in raw["table"].items():
                    table.table[tuple(int(x) for x in k.split("-"))] = [ValidPick(*p) for p in picks]
        counts = Counter(k for u in users if (k := tuple_key(u, rcfg.tuple_size)) is not None)
        frequent = [k for k, n in counts.most_common(rcfg.tuple_max) if n >= rcfg.tuple_min_users]
        todo = [k for k in frequent if k not in table.table]
        if todo:
            engine.builder.prepare([cls.pseudo_user(k, engine.catalog, engine.bundle) for k in todo])
            results = engine.backend.generate(engine.tuple_requests(todo))
            table.calls += len(todo)
            for key, res in zip(todo, results, strict=True):
                try:
                    answer = parse_proposal(res.text if res.ok else None)
                    limit = max(engine.m, engine.cfg.refresh.tuple_picks)
                    picks, _ = validate_picks(answer, engine.catalog.label_to_id, set(key), limit)
                except AnswerError:
                    continue  # users of this tuple get per-user calls
                if picks:
                    table.table[key] = picks
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "size": table.size,
                "table": {
                    "-".join(map(str, k)): [[p.cluster_id, p.label, p.reason] for p in v]
                    for k, v in table.table.items()
                },
            }
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
            tmp.replace(path)
        return table
