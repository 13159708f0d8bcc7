"""Redis key scheme shared by both services.

``{prefix}:{<user_id>}:rec`` — the user's NovelInterestRecord (protobuf bytes)
``{prefix}:{<user_id>}:hist`` — the user's recent item ids, most recent first (a list)

The braces are a Redis Cluster hash tag: both keys of one user live in one slot, so a pipeline or
MULTI over them stays valid in Cluster mode. The prefix carries the format version (``serendip:v1``).
"""

from __future__ import annotations

MAX_USER_ID_BYTES = 256


def _tag(user_id: str) -> str:
    if not user_id:
        raise ValueError("user_id must not be empty")
    if len(user_id.encode()) > MAX_USER_ID_BYTES:
        raise ValueError(f"user_id longer than {MAX_USER_ID_BYTES} bytes")
    # Braces inside the id would change which part Redis hashes; they are not allowed in ids.
    if "{" in user_id or "}" in user_id:
        raise ValueError("user_id must not contain '{' or '}'")
    return "{" + user_id + "}"


def record_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:{_tag(user_id)}:rec"


def history_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:{_tag(user_id)}:hist"
