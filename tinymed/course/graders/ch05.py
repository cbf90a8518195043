"""Graders of chapter 5, Self-attention.

5.1 ``attention(q, k, v, mask=None)`` in NumPy: values against tinymed's
    ``F.scaled_dot_product_attention``; the weights read back with ``v`` the identity matrix
    (then the output *is* the weight matrix), so a wrong axis or a missing scale is named;
    leading dimensions, dtype, large scores, boolean masks that broadcast, and a query with
    no key left (zeros, not nan).
5.2 ``causal_mask(lq, lk)``: boolean, and equal to what ``is_causal=True`` lets through,
    for square and rectangular shapes.
5.3 ``online_attention(q, kv_tiles, scale=None)``: output and log-sum-exp against tinymed's
    op and NumPy, for tiles of unequal sizes, a maximum that rises late, scores in the
    thousands, and tiles whose buffer is reused for the next tile, as the kernel's shared
    memory is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed.course.grading import Exercise, Fail, expect, expect_close

__all__ = ["EXERCISES"]


def _reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, **kwargs: Any) -> np.ndarray:
    """tinymed's attention on NumPy arrays (mask as a NumPy array too)."""
    if kwargs.get("attn_mask") is not None:
        kwargs["attn_mask"] = tm.tensor(kwargs["attn_mask"])
    return F.scaled_dot_product_attention(tm.tensor(q), tm.tensor(k), tm.tensor(v), **kwargs).numpy()


def _call(fn: Any, *args: Any, what: str) -> np.ndarray:
    """The student's result as a float64 array; a result that is no array fails with a hint, and
    so does NumPy's shape error (the usual cause: ``k.T``, which reverses every axis)."""
    try:
        result = fn(*args)
    except ValueError as e:
        raise Fail(
            f"{what} raised ValueError ({e}); q and k have leading (batch, head) axes: transpose only the last two "
            "axes of k, np.swapaxes(k, -1, -2), since k.T reverses all of them"
        ) from None
    expect(result is not None, f"{what}: your function returned None; return the array")
    try:
        return np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError):
        raise Fail(f"{what}: expected a NumPy array, got {type(result).__name__}") from None


def _grade_attention(ns: Mapping[str, Any]) -> None:
    """Exercise 5.1, long because its checks run in one order (scale, axis, overflow, masks, empty
    rows, dtype) so that the first to fail names the most basic mistake; split up, a later check
    could fire first and give a misleading hint."""
    attention = ns["attention"]
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))
    identity = np.broadcast_to(np.eye(5), (2, 5, 5)).copy()
    weights = _call(attention, q, k, identity, what="attention(q, k, identity)")
    expect(
        weights.shape == (2, 3, 5),
        f"q (2, 3, 4), k (2, 5, 4), v (2, 5, 5) gave shape {weights.shape}, expected (2, 3, 5) = (..., Lq, d_v); "
        "scores are q @ k^T over the last two axes (np.swapaxes(k, -1, -2)), weights @ v",
    )
    expect(
        bool(np.allclose(weights.sum(axis=-1), 1.0)),
        "with v the identity your output is your weight matrix, and its rows (one per query) do not sum to 1: "
        "the softmax must normalise over the keys, the last axis",
    )
    if np.allclose(weights, _reference(q, k, identity, scale=1.0)):
        raise Fail("your weights are softmax(q k^T): divide the scores by sqrt(d_k), d_k = q.shape[-1]")
    expect_close(
        weights,
        _reference(q, k, identity),
        "your weights (the output with v the identity)",
        "weights = softmax(q k^T / sqrt(d_k)) along the last axis",
    )
    v = rng.standard_normal((2, 5, 3))
    expect_close(_call(attention, q, k, v, what="attention(q, k, v)"), _reference(q, k, v), "attention(q, k, v)")

    q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
    out32 = attention(q32, k32, v32)
    expect(
        getattr(out32, "dtype", None) == np.float32,
        f"float32 inputs gave {getattr(out32, 'dtype', type(out32).__name__)}; return q's dtype (.astype(q.dtype))",
    )
    big = 2000.0 * q
    with np.errstate(all="ignore"):
        out = _call(attention, big, k, v, what="attention with scores in the thousands")
    expect(
        bool(np.all(np.isfinite(out))),
        "with scores in the thousands your output has inf or nan: exp overflows; subtract each row's maximum "
        "score before exp (it cancels in the softmax)",
    )
    expect_close(out, _reference(big, k, v), "attention with scores in the thousands", rtol=1e-6, atol=1e-8)

    keep = rng.random((2, 3, 5)) < 0.6
    keep[:, :, 0] = True  # every query keeps at least one key
    masked = _call(attention, q, k, identity, keep, what="attention with a mask")
    if np.allclose(masked, _reference(q, k, identity, attn_mask=~keep)):
        raise Fail("your mask works the wrong way round: True means the query MAY attend to that key")
    expect(
        bool(np.all(masked[~keep] == 0)),
        "a key the mask removes still gets weight: set its score to -inf before the softmax (np.where(mask, s, -inf))",
    )
    expect_close(masked, _reference(q, k, identity, attn_mask=keep), "the weights under a boolean mask")
    padding = np.array([True, True, True, False, False])  # (Lk,): broadcasts over batch and queries
    expect_close(
        _call(attention, q, k, v, padding, what="attention with a mask of shape (Lk,)"),
        _reference(q, k, v, attn_mask=padding),
        "attention with a key-padding mask of shape (Lk,), broadcast to (..., Lq, Lk)",
        "let the mask broadcast (np.where does) instead of indexing with it",
    )

    empty = np.ones((3, 5), dtype=bool)
    empty[1] = False  # query 1 may look at nothing
    with np.errstate(all="ignore"):
        out = _call(attention, q, k, v, empty, what="attention with a query that may attend to no key")
    expect(
        bool(np.all(np.isfinite(out))),
        "a query with no key left gives nan: its row maximum is -inf and -inf - -inf is nan; shift such a row by 0 "
        "instead, and divide by 1 where the sum of its weights is 0, so that it gets zeros",
    )
    expect_close(out, _reference(q, k, v, attn_mask=empty), "attention with a query that may attend to no key")


def _allowed_by_is_causal(lq: int, lk: int) -> np.ndarray:
    """Which keys ``is_causal=True`` lets each query see: with q = 0 every kept key gets the same
    weight, and with v the identity the output is the weights."""
    weights = _reference(np.zeros((lq, 2)), np.zeros((lk, 2)), np.eye(lk), is_causal=True)
    return weights > 0


def _grade_causal_mask(ns: Mapping[str, Any]) -> None:
    causal_mask = ns["causal_mask"]
    mask = causal_mask(4, 4)
    expect(
        isinstance(mask, np.ndarray) and mask.dtype == np.bool_,
        f"causal_mask must return a boolean NumPy array (True = may attend), got "
        f"{getattr(mask, 'dtype', type(mask).__name__)}; an additive 0 / -inf mask is the other spelling",
    )
    expect(mask.shape == (4, 4), f"causal_mask(4, 4) has shape {mask.shape}, expected (lq, lk) = (4, 4)")
    want = _allowed_by_is_causal(4, 4)
    if np.array_equal(mask, ~want):
        raise Fail("your mask is inverted: True must mean the query MAY attend, i.e. key j <= query i")
    if np.array_equal(mask, want.T):
        raise Fail("your mask is the upper triangle: query i (row i) may see keys 0..i, the lower triangle")
    if np.array_equal(mask, want & ~np.eye(4, dtype=bool)):
        raise Fail("query i must also see its own key j = i: keep the diagonal")
    expect(bool(np.array_equal(mask, want)), f"causal_mask(4, 4) is\n{mask.astype(int)}\nexpected\n{want.astype(int)}")
    for lq, lk in ((2, 5), (5, 2), (1, 3), (3, 1)):
        mask = np.asarray(causal_mask(lq, lk))
        want = _allowed_by_is_causal(lq, lk)
        expect(
            mask.shape == want.shape and bool(np.array_equal(mask, want)),
            f"causal_mask({lq}, {lk}) is\n{mask.astype(int)}\nexpected (aligned at the top left, as is_causal)\n"
            f"{want.astype(int)}; row i keeps keys 0..i whatever lq and lk are",
        )


class _TileStream:
    """Keys and values handed out tile by tile through one buffer each, reused for every tile
    (a kept tile is overwritten with nan when the next is handed out)."""

    def __init__(self, k: np.ndarray, v: np.ndarray, sizes: list[int]) -> None:
        self.k, self.v, self.sizes = k, v, sizes
        self.k_buffer = np.empty((max(sizes), k.shape[1]))
        self.v_buffer = np.empty((max(sizes), v.shape[1]))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 0
        for size in self.sizes:
            self.k_buffer[:], self.v_buffer[:] = np.nan, np.nan
            self.k_buffer[:size], self.v_buffer[:size] = self.k[start : start + size], self.v[start : start + size]
            yield self.k_buffer[:size], self.v_buffer[:size]
            start += size


def _log_sum_exp(s: np.ndarray) -> np.ndarray:
    top = s.max(axis=1)
    return top + np.log(np.exp(s - top[:, None]).sum(axis=1))


def _online(fn: Any, q: np.ndarray, k: np.ndarray, v: np.ndarray, sizes: list[int], what: str, **kwargs: Any):
    """Run the student's online attention on a stream of tiles; returns (out, lse) as float64."""
    result = fn(q, iter(_TileStream(k, v, sizes)), **kwargs)
    expect(
        isinstance(result, tuple) and len(result) == 2,
        f"{what}: return a pair (out, lse), got {type(result).__name__}",
    )
    out, lse = (np.asarray(r, dtype=np.float64) for r in result)
    expect(
        out.shape == (len(q), v.shape[1]) and lse.shape == (len(q),),
        f"{what}: out has shape {out.shape} and lse {lse.shape}, expected {(len(q), v.shape[1])} and {(len(q),)}",
    )
    return out, lse


def _grade_online(ns: Mapping[str, Any]) -> None:
    online = ns["online_attention"]
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((7, 4)), rng.standard_normal((7, 2))
    want = _reference(q, k, v)
    lse_want = _log_sum_exp(q @ k.T / 2.0)
    out, lse = _online(online, q, k, v, [7], "one tile holding every key")
    expect_close(out, want, "out with one tile of all 7 keys", "with one tile this is plain attention")
    expect_close(lse, lse_want, "lse with one tile", "lse = m + log(l): log(sum_j exp(s_j)) of the scaled scores")

    ramp = np.linspace(0.0, 3.0, 7)[:, None] * np.ones((1, 4))  # later keys score higher: the max rises late
    out, lse = _online(online, q, k + ramp, v, [2, 2, 2, 1], "tiles of 2, 2, 2, 1 keys")
    if np.isnan(out).any() or np.isnan(lse).any():
        raise Fail(
            "tiles of 2, 2, 2, 1 keys gave nan: each tile arrives in the same buffer as the one before (like the "
            "kernel's shared memory), so a tile kept for later is overwritten; fold each tile into m, l and the "
            "running sum of values before taking the next"
        )
    expect_close(
        out,
        _reference(q, k + ramp, v),
        "out over tiles of 2, 2, 2, 1 keys whose scores rise tile after tile",
        "when a tile raises the running max from m to m', multiply l AND the running sum of values by exp(m - m')",
    )
    expect_close(lse, _log_sum_exp(q @ (k + ramp).T / 2.0), "lse over tiles of 2, 2, 2, 1 keys", "lse = m + log(l)")

    out, lse = _online(online, q, k, v, [1] * 7, "tiles of one key each")
    expect_close(out, want, "out over tiles of one key each")
    out, _ = _online(online, q, k, v, [3, 4], "tiles of 3 and 4 keys, scale = 1", scale=1.0)
    expect_close(out, _reference(q, k, v, scale=1.0), "out with scale=1.0", "use the scale you are given")

    big = 2000.0 * q
    with np.errstate(all="ignore"):
        out, lse = _online(online, big, k, v, [3, 4], "scores in the thousands")
    expect(
        bool(np.all(np.isfinite(out)) and np.all(np.isfinite(lse))),
        "with scores in the thousands you get inf or nan: exponentiate s - m', never s itself",
    )
    expect_close(out, _reference(big, k, v), "out with scores in the thousands", rtol=1e-6, atol=1e-8)
    expect_close(lse, _log_sum_exp(big @ k.T / 2.0), "lse with scores in the thousands", rtol=1e-9)


EXERCISES = (
    Exercise(
        "5.1",
        "attention",
        "softmax(q k^T / sqrt(d_k) + mask) v in NumPy, with a boolean mask (True = may attend)",
        _grade_attention,
    ),
    Exercise(
        "5.2",
        "causal_mask",
        "a boolean (lq, lk) mask, True where key j <= query i",
        _grade_causal_mask,
    ),
    Exercise(
        "5.3",
        "online_attention",
        "attention over key/value tiles with a running max, sum and weighted sum; return (out, lse)",
        _grade_online,
    ),
)
