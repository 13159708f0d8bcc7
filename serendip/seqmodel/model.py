"""SASRec: a causal self-attention next-item model (Kang & McAuley, 2018), pre-norm variant.

Token 0 is padding; internal item index ``i`` is token ``i + 1``. Input and output share one item
table, so a score is the plain dot product ``encode(history) · item_embeddings()[i]`` — exactly what
a FAISS inner-product index over ``item_embeddings()`` returns for an ``encode()`` query.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PAD = 0


class _Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        # Functional calls on the submodules' parameters: the modules stay (state_dict names,
        # initialisation), but Module.__call__ costs a few µs each and the online path encodes one
        # small batch per request batch, where that overhead is a third of the encode.
        b, length, dim = x.shape
        p, training = self.dropout, self.training
        ln, ff_in, ff_out = self.ln_attn, self.ff[0], self.ff[3]
        h = F.layer_norm(x, (dim,), ln.weight, ln.bias, ln.eps)
        q, k, v = F.linear(h, self.qkv.weight, self.qkv.bias).split(dim, dim=-1)
        if last_only:
            # The final block only has to produce the last position: a 1-row query instead of L rows.
            q, x, allowed = q[:, -1:], x[:, -1:], allowed[:, :, -1:]
        heads, hd = self.heads, dim // self.heads
        q = q.reshape(b, -1, heads, hd).transpose(1, 2)
        k = k.reshape(b, length, heads, hd).transpose(1, 2)
        v = v.reshape(b, length, heads, hd).transpose(1, 2)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p if training else 0.0)
        attn = F.linear(attn.transpose(1, 2).reshape(b, -1, dim), self.proj.weight, self.proj.bias)
        x = x + F.dropout(attn, p, training)
        ln = self.ln_ff
        h = F.layer_norm(x, (dim,), ln.weight, ln.bias, ln.eps)
        h = F.dropout(F.gelu(F.linear(h, ff_in.weight, ff_in.bias)), p, training)
        return x + F.dropout(F.linear(h, ff_out.weight, ff_out.bias), p, training)


class SASRec(nn.Module):
    def __init__(self, n_items: int, dim: int, max_len: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        if n_items < 1:
            raise ValueError("n_items must be >= 1")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.n_items, self.dim, self.max_len = n_items, dim, max_len
        self.layers, self.heads, self.dropout = layers, heads, dropout
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
        # Position p = distance from the most recent item (0 = newest). Counting from the right makes
        # the output independent of how much left padding a history carries.
        self.pos_emb = nn.Embedding(max_len, dim)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
        self.ln_out = nn.LayerNorm(dim)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.item_emb.weight, std=1.0 / math.sqrt(self.dim))
        nn.init.normal_(self.pos_emb.weight, std=1.0 / math.sqrt(self.dim))
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def hparams(self) -> dict[str, int | float]:
        """Constructor arguments as a plain dict (stored next to the state_dict)."""
        return {
            "n_items": self.n_items,
            "dim": self.dim,
            "max_len": self.max_len,
            "layers": self.layers,
            "heads": self.heads,
            "dropout": self.dropout,
        }

    def hidden(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Per-position hidden states [B, L, dim] (or [B, 1, dim] with ``last_only``)."""
        tokens = tokens[:, -self.max_len :]
        return self.contextualize(self.embed(tokens), tokens == PAD, last_only)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Input vectors [B, L, dim]: item embedding + embedding of the distance from the newest."""
        length = tokens.shape[1]
        positions = torch.arange(length - 1, -1, -1, device=tokens.device)
        x = self.item_emb(tokens) * math.sqrt(self.dim) + self.pos_emb(positions)
        return self.emb_drop(x)

    def contextualize(self, x: torch.Tensor, pad: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """The transformer over embedded inputs ``x`` [B, L, dim] with padding mask ``pad`` [B, L].

        Apart from ``embed`` so that an exported encoder (seqmodel/user_encoder.py) can leave the item table,
        the bulk of the model's bytes, outside the graph and gather its rows itself.
        """
        length = x.shape[1]
        # allowed[b, 1, i, j]: query i may read key j — causal, never a pad key; a pad query reads
        # itself so that no softmax row is empty (its output is never read by real positions).
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=x.device)
        allowed = (causal & ~pad[:, None, :]) | eye
        allowed = allowed[:, None]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block.forward(x, allowed, last_only=last_only and i == last)
        return self.ln_out(x)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """User embeddings [B, dim] from left-padded token histories [B, L] (the last position's state)."""
        # Columns that are padding in every row change nothing (right-anchored positions, masked
        # keys), so dropping them makes short histories cheap on the online path.
        nonpad_cols = (tokens != PAD).any(dim=0).nonzero()
        tokens = tokens[:, int(nonpad_cols[0]) :] if len(nonpad_cols) else tokens[:, -1:]
        return self.hidden(tokens, last_only=True)[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        """Output item table [n_items, dim]; row i scores internal item i."""
        return self.item_emb.weight[1:]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encode(tokens)
