"""Histories → tokens → user embeddings, and model persistence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serendip.seqmodel.model import SASRec

_FORMAT = "serendip.sasrec/1"


def histories_to_tokens(histories: Sequence[Sequence[int]], max_len: int) -> np.ndarray:
    """Left-padded tokens [B, max_len] (int64): the most recent ``max_len`` items, item i → token i+1."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, history in enumerate(histories):
        recent = np.asarray(history, dtype=np.int64)[-max_len:] if len(history) else np.empty(0, np.int64)
        if len(recent):
            out[row, max_len - len(recent) :] = recent + 1
    return out


def trim_padding(tokens: np.ndarray) -> np.ndarray:
    """Drop the leading columns that are padding in every row (at least one column stays).

    They change nothing (right-anchored positions, masked keys), so short histories stay cheap.
    The numpy twin of the trim in ``SASRec.encode``, for encoders that do not run the torch model.
    """
    nonpad = np.flatnonzero((tokens != 0).any(axis=0))
    return tokens[:, nonpad[0] :] if len(nonpad) else tokens[:, -1:]


def encode_users(model: SASRec, histories: Sequence[Sequence[int]], batch_size: int = 1024) -> np.ndarray:
    """User embeddings [B, dim] (float32). An empty history yields the model's cold-start vector."""
    tokens = histories_to_tokens(histories, model.max_len)  # SASRec.encode trims padding columns
    # Toggle modes only when needed: eval()/train() walk every submodule (~0.1 ms each on the online
    # path, per call) and would race between threads sharing a served model.
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode():
            parts = [
                model.encode(torch.from_numpy(tokens[i : i + batch_size])).numpy()
                for i in range(0, len(tokens), batch_size)
            ]
    finally:
        if was_training:
            model.train()
    if not parts:
        return np.zeros((0, model.dim), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def save_model(model: SASRec, path: Path) -> None:
    """One file: hyperparameters as a plain dict + state_dict, loadable with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": _FORMAT,
        "hparams": model.hparams(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(payload, path)


def load_model(path: Path) -> SASRec:
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a serendip SASRec model file")
    model = SASRec(**payload["hparams"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model
