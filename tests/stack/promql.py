"""Metric and label names used by a PromQL expression (enough for our dashboards and alerts)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


@dataclass
class Usage:
    metrics: set[str] = field(default_factory=set)
    # (metric or "" for a bare selector, label, operator, value)
    matchers: list[tuple[str, str, str, str]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def parse(expr: str) -> Usage:
    u = Usage()
    for m in SELECTOR.finditer(expr):
        for lm in MATCHER.finditer(m.group(2)):
            u.matchers.append((m.group(1) or "", lm.group(1), lm.group(2), lm.group(3)))
    for g in GROUPING.finditer(expr):
        u.grouping.update(x.strip() for x in g.group(1).split(",") if x.strip())
    stripped = SELECTOR.sub(lambda m: (m.group(1) or "") + " ", expr)
    stripped = GROUPING.sub(" ", stripped)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # range selectors ([5m], [$__rate_interval])
    stripped = re.sub(r'"[^"]*"', " ", stripped)
    stripped = re.sub(r"\$[a-zA-Z_]+", " ", stripped)
    stripped = re.sub(r"(?<![a-zA-Z0-9_:])\d[\d.]*(?:[eE][-+]?\d+)?", " ", stripped)  # numbers: 0.99, 1e-9
    for m in NAME.finditer(stripped):
        name, rest = m.group(0), stripped[m.end() :].lstrip()
        if rest.startswith("(") or name.lower() in KEYWORDS:
            continue  # a function call or an operator keyword
        u.metrics.add(name)
    return u
