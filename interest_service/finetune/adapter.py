"""Merging a `serendip finetune` LoRA adapter into the local backend's model at load time.

Merged, not wrapped: the weights become W + BA once, so decoding costs exactly what the base model
costs (and int8 quantisation, applied after, sees the merged weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interest_service.finetune.train import ADAPTER_META

MAX_SUFFIX = 24  # the model id is written into every ≤512-byte record


def adapter_name(path: Path) -> str:
    meta = path / ADAPTER_META
    name = json.loads(meta.read_text()).get("name") if meta.is_file() else None
    return str(name or path.name)[:MAX_SUFFIX]


def merge_adapter(model: Any, path: Path) -> tuple[Any, str]:
    """(model with the adapter merged in, model-id suffix "+<adapter name>")."""
    from peft import PeftModel

    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"interest.local.adapter_path: no LoRA adapter (adapter_config.json) in {path}"
        )
    merged = PeftModel.from_pretrained(model, path).merge_and_unload()
    return merged, "+" + adapter_name(path)
