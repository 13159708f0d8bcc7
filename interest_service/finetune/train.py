"""`serendip finetune`: a LoRA adapter (peft) for the local model, trained on `sft-data` examples.

The loss is the next-token cross-entropy on the assistant's tokens only (the JSON answer and the
end-of-turn token); the prompt is context. Every example starts with the same static prefix (chat
header + instructions + taxonomy, ~2-3k tokens for 150 clusters, ~10x the per-user part), so it is
run once per optimizer step with gradients and its keys/values are shared by all the step's
examples — the exact gradient, at a fraction of the cost of repeating the prefix in every row.
Micro-batches bound activation memory: each one back-propagates into detached copies of the
prefix keys/values, whose accumulated gradients are pushed through the prefix pass once at the end.
Keeping the prefix pass's graph costs several GB for a 2-3k-token prefix, so by default
(``prefix_grad = false``) the prefix is re-encoded with the current adapter each step but treated as
a constant: the adapter learns through the per-user text and the answer only.

Tokenisation follows the local backend's shared-prefix path (prefix and per-user text tokenised
separately), so the model is trained on the token sequences it will see when serving.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interest_service.config import FinetuneConfig
from interest_service.finetune.data import SftExample

_USER_MARK = "\u2063USER\u2063"
ADAPTER_META = "serendip_adapter.json"
REPORT = "training_report.json"


def load_base(model_path: Path | None, gguf_file: str | None, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """(model, tokenizer, model id) loaded as the local backend loads a text model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interest_service.backends.local import default_gguf

    if model_path is None:
        path, gguf = default_gguf()
        model_id = "smollm2-135m"
    else:
        path, gguf = Path(model_path), gguf_file
        if not path.exists():
            raise FileNotFoundError(f"base model not found: {path}")
        model_id = gguf or path.name
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    return model, tokenizer, model_id


def split_template(tokenizer: Any, system: str) -> tuple[str, str]:
    """(static prefix, text after the user content), as the local backend splits the chat template."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": _USER_MARK}]
    full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if full.count(_USER_MARK) != 1:
        raise ValueError("chat template does not place the user message once")
    before, after = full.split(_USER_MARK)
    return before, after


@dataclass
class Encoded:
    prefix: list[int]
    rows: list[tuple[list[int], list[int]]]  # (user text + assistant header, answer + end of turn)


def encode(tokenizer: Any, examples: Sequence[SftExample]) -> Encoded:
    systems = {ex.messages[0]["content"] for ex in examples}
    if len(systems) != 1:
        raise ValueError(f"examples carry {len(systems)} different system prompts; one bundle per data set")
    prefix, after = split_template(tokenizer, systems.pop())
    end = tokenizer.eos_token or ""
    rows = []
    for ex in examples:
        context = tokenizer(ex.messages[1]["content"] + after, add_special_tokens=False).input_ids
        answer = tokenizer(ex.messages[2]["content"] + end, add_special_tokens=False).input_ids
        rows.append((context, answer))
    return Encoded(tokenizer(prefix, add_special_tokens=False).input_ids, rows)


def _collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int, p_len: int, device: torch.device):
    """Right-padded ids, the attention mask over prefix + rows, positions, and the answer targets."""
    seqs = [c + a for c, a in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), p_len + width), dtype=torch.long)
    mask[:, :p_len] = 1
    predict = torch.zeros((len(rows), width), dtype=torch.bool)  # positions whose next token is scored
    targets = []
    for r, ((context, answer), seq) in enumerate(zip(rows, seqs, strict=True)):
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, p_len : p_len + len(seq)] = 1
        predict[r, len(context) - 1 : len(seq) - 1] = True
        targets.extend(answer)
    pos = (p_len + torch.arange(width)).expand(len(rows), -1)
    return (
        ids.to(device),
        mask.to(device),
        pos.to(device),
        predict.to(device),
        torch.tensor(targets).to(device),
    )


class PrefixTrainer:
    """Answer-token loss over a shared prefix (see the module doc) for a peft-wrapped causal LM."""

    def __init__(self, model: Any, tokenizer: Any, enc: Encoded, micro_batch: int, prefix_grad: bool = True):
        self.model = model
        self.lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.device = next(model.parameters()).device
        self.prefix = torch.tensor([enc.prefix], device=self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.micro = micro_batch
        self.prefix_grad = prefix_grad
        params = inspect.signature(self.lm.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5

    def _prefix_kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from transformers import DynamicCache

        cache = DynamicCache()
        self.lm.model(input_ids=self.prefix, use_cache=True, **{self._cache_kw: cache})
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _rows_loss(self, rows, kv) -> tuple[torch.Tensor, int]:
        """Summed answer-token cross-entropy of ``rows`` attending to the prefix ``kv``."""
        from transformers import DynamicCache

        ids, mask, pos, predict, targets = _collate(rows, self.pad_id, self.prefix.shape[1], self.device)
        n = ids.shape[0]
        cache = DynamicCache(
            ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kv]
        )
        hidden = self.lm.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **{self._cache_kw: cache}
        ).last_hidden_state
        logits = self.lm.lm_head(hidden[predict]).float()  # only where a loss is taken
        return torch.nn.functional.cross_entropy(logits, targets, reduction="sum"), int(targets.numel())

    def step_loss(self, rows: Sequence[tuple[list[int], list[int]]]) -> float:
        """Forward + backward for one optimizer step's rows; returns the mean answer-token loss."""
        if not self.prefix_grad:  # the prefix is re-encoded with the current adapter, as a constant
            with torch.no_grad():
                kv = self._prefix_kv()
        else:
            kv = self._prefix_kv()
        leaves = [(k.detach().requires_grad_(), v.detach().requires_grad_()) for k, v in kv]
        n_tokens = sum(len(a) for _, a in rows)
        total = 0.0
        for start in range(0, len(rows), self.micro):
            loss, _ = self._rows_loss(rows[start : start + self.micro], leaves)
            (loss / n_tokens).backward()
            total += float(loss.detach())
        if self.prefix_grad:  # the prefix's share of the gradient, in one pass
            # Keys/values no adapter weight reaches (e.g. layer 0's keys without a k_proj LoRA) have no graph.
            pairs = [
                (out, leaf.grad)
                for out, leaf in zip(
                    [t for pair in kv for t in pair], [t for pair in leaves for t in pair], strict=True
                )
                if out.requires_grad and leaf.grad is not None
            ]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return total / n_tokens

    @torch.no_grad()
    def mean_loss(self, rows: Sequence[tuple[list[int], list[int]]]) -> float:
        if not rows:
            return float("nan")
        kv = self._prefix_kv()
        total, n = 0.0, 0
        for start in range(0, len(rows), self.micro):
            loss, k = self._rows_loss(rows[start : start + self.micro], kv)
            total, n = total + float(loss), n + k
        return total / n


@dataclass
class TrainReport:
    base_model: str
    adapter: str
    device: str
    dtype: str
    threads: int
    n_train: int
    n_heldout: int
    prefix_tokens: int
    mean_row_tokens: float
    mean_answer_tokens: float
    epochs: int
    steps: int
    batch_size: int
    lr: float
    lora: dict[str, Any]
    step_losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    heldout_loss_before: float = float("nan")
    heldout_loss_after: float = float("nan")
    train_loss_first: float = float("nan")  # mean of the first ~10% of steps
    train_loss_last: float = float("nan")  # mean of the last ~10% of steps
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    sample_answers: list[str] = field(default_factory=list)
    check: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_lora(
    examples: Sequence[SftExample],
    out: Path,
    cfg: FinetuneConfig,
    *,
    model_path: Path | None = None,
    gguf_file: str | None = None,
    dtype: torch.dtype | None = None,
    manifest: dict[str, Any] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainReport:
    """Train a LoRA adapter on the ``train`` examples, score ``heldout`` ones, save both to ``out``."""
    from peft import LoraConfig, get_peft_model

    from interest_service.backends.local import resolve_dtype

    train = [ex for ex in examples if ex.split == "train"]
    heldout = [ex for ex in examples if ex.split == "heldout"][: cfg.loss_examples]
    if not train:
        raise ValueError("no training examples (every example is held out)")
    rng = np.random.default_rng(cfg.seed)
    if cfg.max_examples is not None and len(train) > cfg.max_examples:
        keep = np.sort(rng.choice(len(train), cfg.max_examples, replace=False))
        train = [train[i] for i in keep.tolist()]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or resolve_dtype("auto")
    torch.manual_seed(cfg.seed)
    model, tokenizer, base_id = load_base(model_path, gguf_file, dtype)
    model.to(device)
    enc = encode(tokenizer, [*train, *heldout])
    train_rows, held_rows = enc.rows[: len(train)], enc.rows[len(train) :]
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    trainer = PrefixTrainer(model, tokenizer, enc, cfg.micro_batch, cfg.prefix_grad)
    report = TrainReport(
        base_model=base_id,
        adapter=out.name,
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        n_train=len(train),
        n_heldout=len(heldout),
        prefix_tokens=len(enc.prefix),
        mean_row_tokens=float(np.mean([len(c) + len(a) for c, a in enc.rows])),
        mean_answer_tokens=float(np.mean([len(a) for _, a in enc.rows])),
        epochs=cfg.epochs,
        steps=cfg.epochs * math.ceil(len(train) / cfg.batch_size),
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        lora={
            "r": cfg.lora_r,
            "alpha": cfg.lora_alpha,
            "dropout": cfg.lora_dropout,
            "target_modules": list(cfg.target_modules),
        },
        data={k: manifest[k] for k in ("bundle_id", "prompt_version", "split", "balance") if k in manifest}
        if manifest
        else {},
        sample_answers=[ex.messages[2]["content"] for ex in train[:3]],
    )
    t_start = time.perf_counter()
    model.eval()  # dropout off while scoring
    report.heldout_loss_before = trainer.mean_loss(held_rows)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(  # short linear warm-up, then linear decay
        opt, lambda s: min(1.0, (s + 1) / max(1, report.steps // 10)) * max(0.0, 1 - s / report.steps)
    )
    step = 0
    for _ in range(cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(train_rows)).tolist()
        for start in range(0, len(order), cfg.batch_size):
            rows = [train_rows[i] for i in order[start : start + cfg.batch_size]]
            loss = trainer.step_loss(rows)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            report.step_losses.append(round(loss, 5))
            if on_step:
                on_step(step, report.steps, loss)
        report.epoch_seconds.append(round(time.perf_counter() - t0, 2))
    model.eval()
    report.heldout_loss_after = trainer.mean_loss(held_rows)
    tenth = max(1, len(report.step_losses) // 10)
    report.train_loss_first = float(np.mean(report.step_losses[:tenth]))
    report.train_loss_last = float(np.mean(report.step_losses[-tenth:]))
    report.seconds = round(time.perf_counter() - t_start, 2)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    meta = {
        "name": out.name,
        "base_model": base_id,
        "bundle_id": report.data.get("bundle_id"),
        "prompt_version": report.data.get("prompt_version"),
        "descriptions": (manifest or {}).get("descriptions"),
    }
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=1))
    save_report(out, report)
    return report


def save_report(out: Path, report: TrainReport) -> None:
    (out / REPORT).write_text(json.dumps(report.as_dict(), indent=1, ensure_ascii=False))
