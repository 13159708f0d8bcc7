"""Refresh checkpoints: a killed run resumes without redoing the users it already finished.

One JSON-lines file per (bundle, run key): a header, then one line per committed batch listing its
users. A batch's line is appended (and fsynced) only after all its records are written, so a crash
mid-batch redoes at most that batch. A finished run removes its file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


class Checkpoint:
    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = header
        self.done: set[str] = set()
        self.resumed = False
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            try:
                first = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                first = None
            if first == header:
                for line in lines[1:]:
                    try:
                        self.done.update(json.loads(line)["done"])
                    except (json.JSONDecodeError, KeyError, TypeError):
                        break  # a torn last line (killed mid-write): that batch is redone
                self.resumed = True
        if not self.resumed:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_all([json.dumps(header, sort_keys=True)])

    @staticmethod
    def for_run(state_dir: Path, bundle_id: str, params: dict[str, Any]) -> Checkpoint:
        header = {"bundle_id": bundle_id, **params}
        key = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:16]
        return Checkpoint(Path(state_dir) / "checkpoints" / f"refresh-{key}.jsonl", header)

    def _write_all(self, lines: list[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(self.path)

    def commit(self, user_ids: list[str]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"done": user_ids}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done.update(user_ids)

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)
