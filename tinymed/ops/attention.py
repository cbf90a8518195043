"""Scaled dot-product attention, ``softmax(Q K^T / sqrt(d_k)) V``.

The fused path calls the backend primitives ``attention_forward`` (which keeps each row's
log-sum-exp) and ``attention_backward`` (which rebuilds the probabilities from it instead of
storing them). When dropout is asked for, or the float mask itself needs a gradient, the
formula is written step by step with the probabilities in memory instead.
"""

from __future__ import annotations

import math

import numpy as np

from tinymed.autograd import Function, same_device
from tinymed.dtypes import is_floating
from tinymed.ops.activation import softmax
from tinymed.ops.arguments import float_tensor
from tinymed.ops.dropout import dropout
from tinymed.ops.operands import constant
from tinymed.ops.shape import where
from tinymed.tensor import Tensor


class _Attention(Function):
    """out = softmax(scale * q k^T + mask) v for B independent heads.

    q (B, Lq, E), k (B, Lk, E), v (B, Lk, Ev) -> out (B, Lq, Ev); mask None or additive
    (B, Lq, Lk). The backend keeps each row's log-sum-exp ``lse`` so that backward rebuilds
    P = exp(s - lse) instead of storing the (Lq, Lk) probabilities; with D = rowsum(dO * out),
    dS = P * (dO v^T - D): dq = scale dS k, dk = scale dS^T q, dv = P^T dO.
    """

    def forward(self, q, k, v, mask, scale, is_causal):
        out, lse = self.backend.attention_forward(q, k, v, mask, scale, is_causal)
        self.saved = q, k, v, out, lse, mask, scale, is_causal
        return out

    def backward(self, grad):
        return self.backend.attention_backward(grad, *self.saved)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(Q K^T * scale + mask) V, with scale = 1/sqrt(E) by default.

    query (..., Lq, E), key (..., Lk, E), value (..., Lk, Ev) -> (..., Lq, Ev); the leading
    (batch, head) dims broadcast. ``attn_mask`` broadcasts to (..., Lq, Lk): boolean (True
    takes part, as PyTorch) or an additive float mask. ``is_causal`` hides every key j > i.
    A query row with no key left gives 0 (PyTorch's safe softmax). ``enable_gqa`` repeats
    each key/value head for a group of query heads (dim -3).

    The leading dims are flattened into one batch for the backend's attention kernel. When
    ``dropout_p > 0``, or the float mask itself needs a gradient, the probabilities are
    materialised instead (scores, :func:`softmax`, :func:`dropout`, matmul), since the
    kernel neither draws dropout masks nor returns dL/dmask. Dropout is applied whenever
    ``dropout_p > 0``, as PyTorch: pass 0 when evaluating.
    """
    op = "scaled_dot_product_attention"
    _check_tensors(op, query, key, value)
    if enable_gqa:
        key, value = _repeat_kv_heads(op, query, key), _repeat_kv_heads(op, query, value)
    batch = _check_shapes(op, query, key, value, attn_mask, dropout_p, is_causal)
    (lq, e), lk, ev = query.shape[-2:], key.shape[-2], value.shape[-1]
    scale = 1.0 / math.sqrt(e) if scale is None else float(scale)

    bias = attn_mask  # the mask as additive scores: 0 keeps a key, -inf removes it
    if attn_mask is not None and not is_floating(attn_mask.dtype):
        bias = Tensor.wrap(
            query.device.backend.xp.where(attn_mask.array, 0.0, -math.inf).astype(query.dtype), query.device
        )
    if dropout_p > 0 or bias is not None and bias.requires_grad:
        if is_causal:
            bias = constant(np.where(np.tri(lq, lk, dtype=bool), 0.0, -np.inf).astype(query.dtype), query)
        return _attention_materialised(query, key, value, bias, dropout_p, scale)

    def flat(t: Tensor, rows: int, cols: int) -> Tensor:
        full = (*batch, rows, cols)
        return (t if t.shape == full else t.expand(*full)).reshape(-1, rows, cols)

    mask = None if bias is None else flat(bias, lq, lk).array
    out = _Attention.apply(
        flat(query, lq, e), flat(key, lk, e), flat(value, lk, ev), mask=mask, scale=scale, is_causal=is_causal
    )
    return out.reshape(*batch, lq, ev)


def _check_tensors(op: str, query: Tensor, key: Tensor, value: Tensor) -> None:
    """query, key and value must be float tensors of one dtype and device, each (..., L, E)."""
    float_tensor(op, "query", query)
    float_tensor(op, "key", key, query)
    float_tensor(op, "value", value, query)
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} must have at least 2 dims (..., L, E), got shape {t.shape}")


def _check_shapes(
    op: str,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None,
    dropout_p: float,
    is_causal: bool,
) -> tuple[int, ...]:
    """Check how scaled_dot_product_attention's arguments fit together; returns the broadcast
    leading (batch, head) dims of query, key, value and the mask."""
    (lq, e), (lk, ek), lv = query.shape[-2:], key.shape[-2:], value.shape[-2]
    if e != ek or lk != lv:
        raise ValueError(
            f"{op}: expects query (..., Lq, E), key (..., Lk, E), value (..., Lk, Ev), "
            f"got query {query.shape}, key {key.shape}, value {value.shape}"
        )
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    leading = [query.shape[:-2], key.shape[:-2], value.shape[:-2]]
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{op}: give attn_mask or is_causal=True, not both")
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"{op}: attn_mask must be a Tensor, got {type(attn_mask).__name__}")
        if attn_mask.dtype != np.bool_ and attn_mask.dtype != query.dtype:
            raise TypeError(f"{op}: attn_mask must be bool or have query's dtype {query.dtype}, got {attn_mask.dtype}")
        same_device(op, (query, attn_mask))
        mask_rows = attn_mask.shape[-2:] if attn_mask.ndim >= 2 else (1, *attn_mask.shape)
        if any(m not in (1, n) for m, n in zip(mask_rows, (lq, lk))):
            raise ValueError(
                f"{op}: attn_mask {attn_mask.shape} does not broadcast to (..., Lq, Lk) = (..., {lq}, {lk})"
            )
        leading.append(attn_mask.shape[:-2])
    try:
        batch = np.broadcast_shapes(*leading)
    except ValueError:
        shapes = f"query {query.shape}, key {key.shape}, value {value.shape}" + (
            f", attn_mask {attn_mask.shape}" if attn_mask is not None else ""
        )
        raise ValueError(f"{op}: the leading (batch, head) dims do not broadcast: {shapes}") from None
    return batch


def _repeat_kv_heads(op: str, query: Tensor, kv: Tensor) -> Tensor:
    """Grouped-query attention: head h of key/value serves query heads h*g .. h*g + g - 1."""
    if query.ndim < 3 or kv.ndim < 3 or query.shape[-3] % kv.shape[-3]:
        raise ValueError(
            f"{op}: enable_gqa needs (..., heads, L, E) with query heads a multiple of key/value heads, got query {query.shape} and {kv.shape}"
        )
    group = query.shape[-3] // kv.shape[-3]
    *lead, heads, length, dim = kv.shape
    return kv.unsqueeze(-3).expand(*lead, heads, group, length, dim).reshape(*lead, heads * group, length, dim)


def attention_probabilities(query: Tensor, key: Tensor, bias: Tensor | None, scale: float) -> Tensor:
    """P = softmax(scale * Q K^T + bias) over the keys, (..., Lq, Lk), held in memory.

    A query row whose every key was removed (bias -inf throughout) gets probabilities 0,
    as PyTorch's safe softmax in scaled_dot_product_attention (the plain softmax would give
    NaN). nn.MultiheadAttention returns these as its attention weights."""
    scores = (query @ key.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias
    empty = Tensor.wrap(scores.device.backend.xp.all(scores.array == -math.inf, axis=-1, keepdims=True), scores.device)
    return where(empty, 0.0, softmax(where(empty, 0.0, scores), -1))


def _attention_materialised(
    query: Tensor, key: Tensor, value: Tensor, bias: Tensor | None, dropout_p: float, scale: float
) -> Tensor:
    """The attention formula step by step, with the (..., Lq, Lk) probabilities in memory."""
    return dropout(attention_probabilities(query, key, bias, scale), dropout_p) @ value
