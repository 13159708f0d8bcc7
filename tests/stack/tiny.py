"""A tiny canonical (tabular) MovieLens slice and a config for it: enough for `serendip up` to build a
real bundle in seconds."""

from __future__ import annotations

from pathlib import Path

from tests.datasets import write_tiny_dataset

TINY_ITEMS = 300

__all__ = ["TINY_ITEMS", "write_tiny_config", "write_tiny_dataset"]


def write_tiny_config(path: Path, data: Path, bundle_root: Path) -> Path:
    path.write_text(
        f"""
[data]
adapter = "tabular"
path = "{data}"

[taxonomy]
n_coarse = 4
n_fine = 12

[seqmodel]
dim = 16
heads = 2
max_len = 20
epochs = 2
negatives = 16

[bundle]
root = "{bundle_root}"

[retrieval]
drain_delay_s = 0.2
watch_interval_s = 0
"""
    )
    return path
