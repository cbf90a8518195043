"""Multi-head attention (mirrors ``torch.nn.MultiheadAttention``).

Each of ``num_heads`` heads projects the inputs to its own queries, keys and values of
size ``head_dim = embed_dim / num_heads`` and attends with
``softmax(Q K^T / sqrt(head_dim) + mask) V`` (:func:`tinymed.functional.scaled_dot_product_attention`);
the heads' outputs are concatenated and projected back by ``out_proj``.

One difference from PyTorch: ``batch_first`` defaults to True here, so inputs are
``(N, L, E)`` as in the rest of tinymed (PyTorch's default False means ``(L, N, E)``).

Masks, as in PyTorch's module (note: the opposite sense to the functional op's bool mask):
a bool ``True`` marks a position that may NOT be attended to; a float mask is added to the
scores (``-inf`` removes). ``attn_mask`` is ``(L, S)`` or ``(N * num_heads, L, S)``;
``key_padding_mask`` is ``(N, S)`` and hides padded keys of each sequence.
"""

from __future__ import annotations

import math
from typing import Any

from tinymed import functional as F
from tinymed.creation import zeros, zeros_like
from tinymed.dtypes import bool_
from tinymed.nn import init
from tinymed.nn.linear import Linear
from tinymed.nn.module import Module
from tinymed.nn.parameter import Parameter
from tinymed.tensor import Tensor


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's parameters: ``in_proj_weight`` ``(3E, E)``
    (the query, key and value projections stacked; Xavier-uniform), ``in_proj_bias``
    ``(3E,)`` (zeros), and ``out_proj`` a Linear(E, E) whose bias starts at zero."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        batch_first: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads != 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.in_proj_weight = Parameter(zeros(3 * embed_dim, embed_dim, device=device, dtype=dtype))
        if bias:
            self.in_proj_bias = Parameter(zeros(3 * embed_dim, device=device, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` ``(N, L, E)`` to ``key``/``value`` ``(N, S, E)`` (or the
        same without N, or seq-first when ``batch_first=False``).

        Returns ``(output, weights)``: output has query's shape; weights are the attention
        probabilities ``(N, L, S)`` averaged over heads (``(N, num_heads, L, S)`` with
        ``average_attn_weights=False``), or None when ``need_weights`` is False. With
        dropout in training, the weights returned are those before dropout."""
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                f"MultiheadAttention: query, key and value must all be 3-D (batched) or 2-D, got {query.shape}, {key.shape}, {value.shape}"
            )
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            key_padding_mask = key_padding_mask.unsqueeze(0) if key_padding_mask is not None else None
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, l, e = query.shape
        s = key.shape[1]
        if e != self.embed_dim or key.shape != (n, s, e) or value.shape != (n, s, e):
            raise ValueError(
                f"MultiheadAttention: expected query (N, L, {self.embed_dim}) and key, value (N, S, {self.embed_dim}), "
                f"got query {query.shape}, key {key.shape}, value {value.shape} (batch first)"
            )
        q, k, v = (self._project(x, i) for i, x in enumerate((query, key, value)))
        mask = self._additive_mask(attn_mask, key_padding_mask, q, n, l, s)

        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        out = self.out_proj(out.transpose(1, 2).reshape(n, l, e))

        weights = None
        if need_weights:
            scores = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)
            weights = F.softmax(scores if mask is None else scores + mask, dim=-1)
            if average_attn_weights:
                weights = weights.mean(dim=1)
        if not batched:
            return out.squeeze(0), weights.squeeze(0) if weights is not None else None
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _project(self, x: Tensor, which: int) -> Tensor:
        """The ``which``-th (0 query, 1 key, 2 value) input projection, split into heads:
        ``(N, L, E) -> (N, num_heads, L, head_dim)``."""
        rows = slice(which * self.embed_dim, (which + 1) * self.embed_dim)
        bias = self.in_proj_bias[rows] if self.in_proj_bias is not None else None
        projected = F.linear(x, self.in_proj_weight[rows], bias)
        return projected.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def _additive_mask(
        self, attn_mask: Tensor | None, key_padding_mask: Tensor | None, like: Tensor, n: int, l: int, s: int
    ) -> Tensor | None:
        """Both masks as one float mask broadcastable to ``(N, num_heads, L, S)``, to be
        added to the scores (bool masks become ``-inf`` where True)."""
        mask = None
        if attn_mask is not None:
            if attn_mask.shape == (l, s):
                shaped = attn_mask.reshape(1, 1, l, s)
            elif attn_mask.shape == (n * self.num_heads, l, s):
                shaped = attn_mask.reshape(n, self.num_heads, l, s)
            else:
                raise ValueError(
                    f"MultiheadAttention: attn_mask must be ({l}, {s}) or ({n * self.num_heads}, {l}, {s}), got {attn_mask.shape}"
                )
            mask = _as_additive(shaped, like)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (n, s):
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask must be ({n}, {s}), got {key_padding_mask.shape}"
                )
            padding = _as_additive(key_padding_mask.reshape(n, 1, 1, s), like)
            mask = padding if mask is None else mask + padding
        return mask


def _as_additive(mask: Tensor, like: Tensor) -> Tensor:
    """A bool mask (True = masked) as 0 / -inf in ``like``'s dtype; a float mask as is."""
    if mask.dtype == bool_:
        return zeros_like(mask, dtype=like.dtype).masked_fill(mask, float("-inf"))
    if mask.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: masks must be bool or floating point, got dtype {mask.dtype}")
    return mask.to(like.dtype)


# The course texts spell it MultiHeadAttention; PyTorch spells it MultiheadAttention.
MultiHeadAttention = MultiheadAttention
