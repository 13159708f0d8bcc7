"""Bundle manifest: what a bundle holds and the hashes that prove it is intact."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class FileEntry(BaseModel):
    sha256: str
    bytes: int


class DatasetInfo(BaseModel):
    name: str
    fingerprint: str
    n_items: int
    n_users: int
    n_interactions: int


class Manifest(BaseModel):
    schema_version: int
    bundle_id: str
    created_at: str  # ISO-8601 UTC
    kind: str = "build"  # "build" (from a dataset) or "synth" (benchmark fixture)
    dataset: DatasetInfo
    config: dict[str, Any]
    files: dict[str, FileEntry]
    summary: dict[str, Any] = Field(default_factory=dict)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
