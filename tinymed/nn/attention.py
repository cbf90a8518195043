"""Multi-head attention (mirrors ``torch.nn.MultiheadAttention``).

Each of ``num_heads`` heads projects the inputs to its own queries, keys and values of
size ``head_dim = embed_dim / num_heads`` and attends with
``softmax(Q K^T / sqrt(head_dim) + mask) V`` (:func:`tinymed.functional.scaled_dot_product_attention`);
the heads' outputs are concatenated and projected back by ``out_proj``.

``batch_first`` defaults to False, as PyTorch: inputs are ``(L, N, E)``, sequence first;
tinymed's own models pass ``batch_first=True`` for ``(N, L, E)``.

Masks, as in PyTorch's module (note: the opposite sense to the functional op's bool mask):
a bool ``True`` marks a position that may NOT be attended to; a float mask is added to the
scores (``-inf`` removes). ``attn_mask`` is ``(L, S)`` or ``(N * num_heads, L, S)``;
``key_padding_mask`` is ``(N, S)`` and hides padded keys of each sequence.

One difference from PyTorch: a query whose every key is masked gets attention weights 0
(and so output ``out_proj.bias``), where PyTorch's module returns NaN when it computes the
weights (``need_weights=True``) and 0 when it does not; tinymed gives 0 both ways.
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
from tinymed.ops.arguments import only_default
from tinymed.ops.attention import attention_probabilities
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
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        name = "MultiheadAttention"
        only_default(name, "add_bias_kv", add_bias_kv, False)
        only_default(name, "add_zero_attn", add_zero_attn, False)
        for what, dim in (("kdim", kdim), ("vdim", vdim)):
            if dim not in (None, embed_dim):
                raise ValueError(f"{name}: only {what}=None (= embed_dim, {embed_dim}) is supported, got {what}={dim}")
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads != 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.kdim = self.vdim = embed_dim
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
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` ``(L, N, E)`` to ``key``/``value`` ``(S, N, E)`` (``(N, L, E)``
        with ``batch_first``; ``(L, E)`` without a batch).

        Returns ``(output, weights)``: output has query's shape; weights are the attention
        probabilities ``(N, L, S)`` averaged over heads (``(N, num_heads, L, S)`` with
        ``average_attn_weights=False``), or None when ``need_weights`` is False. In training
        with dropout the weights returned are those after dropout, the ones the output used,
        as PyTorch. ``is_causal`` is PyTorch's hint that ``attn_mask`` (which must be given)
        is the causal mask: when neither weights nor a padding mask are asked for, the
        causal mask is applied directly instead of ``attn_mask``, as PyTorch does."""
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                f"MultiheadAttention: query, key and value must all be 3-D (batched) or 2-D, got {query.shape}, {key.shape}, {value.shape}"
            )
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "MultiheadAttention: is_causal is a hint that attn_mask is the causal mask; pass that attn_mask too"
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
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None  # the hint alone: scaled_dot_product_attention builds the causal mask
        else:
            attn_mask, is_causal = self._additive_mask(attn_mask, key_padding_mask, q, n, l, s), False
        out, weights = self._attend(q, k, v, attn_mask, is_causal, need_weights)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        out = self.out_proj(out.transpose(1, 2).reshape(n, l, e))
        if not batched:
            return out.squeeze(0), weights.squeeze(0) if weights is not None else None
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Every head's ``softmax(Q K^T / sqrt(head_dim) + mask) V`` ``(N, num_heads, L, head_dim)``,
        and, with ``need_weights``, the probabilities after dropout (which are then kept in
        memory; without, the fused scaled_dot_product_attention never stores them)."""
        dropout_p = self.dropout if self.training else 0.0
        if not need_weights:
            return F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal), None
        weights = F.dropout(attention_probabilities(q, k, mask, 1.0 / math.sqrt(self.head_dim)), dropout_p)
        return weights @ v, weights

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
