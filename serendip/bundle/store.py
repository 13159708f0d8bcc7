"""Writing bundles atomically and verifying them before use.

A bundle is built in a hidden temp directory next to its destination, hashed, given a manifest,
fsynced and published with one ``rename``; the ``current`` symlink is then swapped with another
atomic rename. Readers therefore see either the old bundle or the complete new one, never a half.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from serendip.bundle.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    DatasetInfo,
    FileEntry,
    Manifest,
    sha256_file,
)


class BundleError(RuntimeError):
    """A bundle is missing, corrupt, or does not match what the reader expects."""


def new_bundle_id(name: str, fingerprint: str) -> str:
    """``<name>-<yymmddHHMMSS>-<fingerprint[:6]>``: short, because every Redis record carries it."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:20] or "bundle"
    stamp = dt.datetime.now(dt.UTC).strftime("%y%m%d%H%M%S")
    return f"{slug}-{stamp}-{fingerprint[:6]}"


class BundleWriter:
    """Context manager: files go to ``writer.path(name)``; ``publish()`` makes them a bundle."""

    def __init__(self, root: Path, bundle_id: str, current: str | None = "current"):
        self.root = Path(root)
        self.bundle_id = bundle_id
        self.current = current
        self.final = self.root / bundle_id
        self.tmp = self.root / f".tmp-{bundle_id}-{os.getpid()}"
        self.published: Path | None = None

    def __enter__(self) -> BundleWriter:
        if self.final.exists():
            raise BundleError(f"bundle already exists: {self.final}")
        self.tmp.mkdir(parents=True, exist_ok=False)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Whatever happened, nothing half-built stays behind.
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        return self.tmp / name

    def publish(
        self, *, dataset: DatasetInfo, config: dict[str, Any], summary: dict[str, Any], kind: str = "build"
    ) -> Path:
        files = {
            p.name: FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size)
            for p in sorted(self.tmp.iterdir())
            if p.is_file()
        }
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            bundle_id=self.bundle_id,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            kind=kind,
            dataset=dataset,
            config=config,
            files=files,
            summary=summary,
        )
        (self.tmp / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=1), encoding="utf-8")
        for p in self.tmp.iterdir():
            _fsync(p)
        _fsync(self.tmp)
        os.rename(self.tmp, self.final)
        _fsync(self.root)
        if self.current:
            point_current(self.root, self.bundle_id, self.current)
        self.published = self.final
        return self.final


def point_current(root: Path, bundle_id: str, name: str = "current") -> None:
    """Atomically repoint ``root/name`` at ``root/bundle_id``."""
    link = Path(root) / name
    tmp_link = Path(root) / f".{name}.{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(bundle_id, tmp_link)
    os.replace(tmp_link, link)


def resolve_bundle_path(path: Path, current: str = "current") -> Path:
    """A bundle directory itself, or a bundle root whose ``current`` link names one."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file():
        return path
    link = path / current
    if link.exists() and (link / MANIFEST_NAME).is_file():
        return link.resolve()
    raise BundleError(
        f"no bundle at {path} (no {MANIFEST_NAME}, and no '{current}' link to one); run `serendip build`"
    )


def verify_bundle(path: Path) -> Manifest:
    """Check the manifest's schema version and every file's size and sha256; return the manifest."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST_NAME}")
    try:
        manifest = Manifest.model_validate(json.loads(manifest_path.read_text(encoding="utf-8")))
    except (ValueError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest: {exc}") from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: bundle schema version {manifest.schema_version}, this code reads {SCHEMA_VERSION}"
        )
    if manifest.bundle_id != path.name and path.resolve().name != manifest.bundle_id:
        raise BundleError(f"{path}: manifest names bundle {manifest.bundle_id!r}, directory is {path.name!r}")
    for name, entry in manifest.files.items():
        f = path / name
        if not f.is_file():
            raise BundleError(f"{path}: file {name} listed in the manifest is missing")
        if f.stat().st_size != entry.bytes:
            raise BundleError(f"{path}: {name} has {f.stat().st_size} bytes, manifest says {entry.bytes}")
        if sha256_file(f) != entry.sha256:
            raise BundleError(f"{path}: {name} does not match its sha256 in the manifest (corrupt)")
    return manifest


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
