"""Next-item training for SASRec with a softmax loss (full, or sampled with shared negatives)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from serendip.config import SeqModelConfig
from serendip.seqmodel.model import PAD, SASRec

ProgressFn = Callable[[int, int, float], None]


def _windows(sequences: Sequence[np.ndarray], max_len: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut each sequence into windows of ``max_len`` transitions (input tokens, next-item tokens).

    Windows end at ``n``, ``n - shift``, ``n - shift - max_len``, ...: each transition is a target
    at least once per epoch.
    """
    inputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for seq in sequences:
        tokens = np.asarray(seq, dtype=np.int64) + 1
        n = len(tokens)
        if n < 2:
            continue
        # The newest window is always there (it is the context the model serves); the older cuts
        # move by `shift` each epoch, so contexts vary (a few targets repeat; cheap augmentation).
        ends = [n, *range(n - shift, 1, -max_len)] if shift else list(range(n, 1, -max_len))
        for e in ends:
            s = max(0, e - max_len - 1)
            window = tokens[s:e]
            inp = np.zeros(max_len, dtype=np.int64)
            tgt = np.zeros(max_len, dtype=np.int64)
            inp[max_len - (len(window) - 1) :] = window[:-1]
            tgt[max_len - (len(window) - 1) :] = window[1:]
            inputs.append(inp)
            targets.append(tgt)
    if not inputs:
        raise ValueError("no sequence has >= 2 items; nothing to train on")
    return np.stack(inputs), np.stack(targets)


def _batches(targets: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of windows grouped by length (random order among equal lengths)."""
    lengths = (targets != PAD).sum(1)
    order = rng.permutation(len(targets))
    order = order[np.argsort(-lengths[order], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _loss(
    model: SASRec, hidden: torch.Tensor, targets: torch.Tensor, negatives: int, gen: torch.Generator
) -> torch.Tensor:
    """Softmax cross-entropy of each next item; exact over the catalog when negatives covers it."""
    table = model.item_embeddings()
    if negatives >= model.n_items - 1:
        return F.cross_entropy(hidden @ table.T, targets - 1)
    # Sampled softmax: one uniform negative set shared by the batch (one matmul); uniform sampling
    # needs no log-Q correction. Accidental hits of the positive are masked out. The loss is written
    # as logaddexp(pos, logsumexp(neg)) - pos so no [P, 1 + K] logits copy is made: on small CPUs
    # this step is memory-bound.
    neg = torch.randint(0, model.n_items, (negatives,), generator=gen)
    pos_logit = (hidden * table[targets - 1]).sum(-1)
    neg_logit = (hidden @ table[neg].T).masked_fill_(neg[None, :] == (targets - 1)[:, None], float("-inf"))
    return (torch.logaddexp(pos_logit, torch.logsumexp(neg_logit, dim=1)) - pos_logit).mean()


def train_sasrec(
    sequences: list[np.ndarray],
    n_items: int,
    cfg: SeqModelConfig,
    progress: ProgressFn | None = None,
) -> SASRec:
    """Train on per-user chronological positives (internal item indices); returns an eval-mode model."""
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        # fork_rng: seed everything for reproducibility without clobbering the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return _train(sequences, n_items, cfg, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    sequences: list[np.ndarray], n_items: int, cfg: SeqModelConfig, progress: ProgressFn | None
) -> SASRec:
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = SASRec(n_items, cfg.dim, cfg.max_len, cfg.layers, cfg.heads, cfg.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        inputs, targets = _windows(sequences, cfg.max_len, shift=int(rng.integers(cfg.max_len)))
        total, count = 0.0, 0
        for idx in _batches(targets, cfg.batch_size, rng):
            # Batches hold windows of similar length, so all-padding columns can be cut off: exact,
            # since positions count from the right and padding keys are masked anyway.
            width = int((targets[idx] != PAD).sum(1).max())
            inp = torch.from_numpy(inputs[idx, -width:])
            tgt = torch.from_numpy(targets[idx, -width:])
            mask = tgt != PAD
            hidden = model.hidden(inp)[mask]
            loss = _loss(model, hidden, tgt[mask], cfg.negatives, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = int(mask.sum())
            total += loss.item() * n
            count += n
        if progress is not None:
            progress(epoch, cfg.epochs, total / max(count, 1))
    model.eval()
    return model
