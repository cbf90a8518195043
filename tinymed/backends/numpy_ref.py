"""The NumPy backend: the reference every other backend is tested against.

Each primitive of the contract (see :mod:`tinymed.backends`) is its formula written once,
plainly, with NumPy. "Plainly" still means vectorised: there is no Python loop over pixels.
The three ideas that make that possible:

* **Sliding windows.** :func:`_windows` is a strided *view* of the padded input in which
  ``win[n, c, i, j, p, q]`` is ``x_pad[n, c, i*sh + p*dh, j*sw + q*dw]``: the pixel that
  kernel tap ``(p, q)`` sees at output position ``(i, j)``, exactly the index in the
  convolution formula. No data is copied to build it.
* **im2col + one matrix product.** Copying the windows once into a matrix whose rows are
  the ``(c, p, q)`` taps and whose columns are the output positions turns the convolution's
  sum over ``(c, p, q)`` into one large BLAS matrix product, which runs near the CPU's peak.
* **Scatter-adds as a loop over kernel taps.** The gradient with respect to the input
  sends every window back where it came from. Overlapping windows mean several terms land
  on the same pixel, so instead of an element-wise scatter (``np.add.at``, very slow) we
  loop over the ``KH*KW`` taps: for a fixed tap, the pixels it touches are distinct, so
  adding a whole strided slice at once is exact.

Performance: the matrix products are cheap (about 200 GFLOP/s here); moving data is what
costs. So the im2col matrix is built batch-chunk by batch-chunk (:func:`_batch_chunks`),
small enough to stay in the CPU cache, and its layout is chosen so that every product reads
its operands as they lie in memory.

Every primitive computes in its inputs' dtype: float32 stays float32, float64 stays float64.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinymed.backends import output_size

name = "numpy"
xp = np

Pair = tuple[int, int]


def unavailable_reason() -> str | None:
    """NumPy is always there: this backend runs everywhere."""
    return None


def asarray(array) -> np.ndarray:
    """``array`` as a NumPy array, keeping its dtype (no copy when it already is one)."""
    return np.asarray(array)


def to_numpy(array) -> np.ndarray:
    """The host copy of one of this backend's arrays: the array itself."""
    return np.asarray(array)


# ----------------------------------------------------------------------------------------
# Shared by convolution and pooling: padding, output size, sliding windows.
# ----------------------------------------------------------------------------------------

# The im2col matrix of a whole batch can be hundreds of megabytes. Built in chunks of about
# this size it stays in the CPU's cache between being written and being multiplied, and
# below the size (32 MiB) above which the C allocator maps fresh pages from the kernel on
# every call, which alone can cost more than the matrix product.
_CHUNK_BYTES = 4 * 2**20


def _pad(x: np.ndarray, padding: Pair, value: float = 0.0) -> np.ndarray:
    """``x`` (N, C, H, W) with ``padding`` rows/columns of ``value`` added on every side."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    # A filled array with x copied into its middle: what np.pad does, but np.pad's general
    # machinery cost more than the copy at these sizes (4 ms of a 75 ms DCGAN step).
    x_pad = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    x_pad[:, :, ph : ph + h, pw : pw + w] = x
    return x_pad


def _windows(
    x_pad: np.ndarray, kernel_size: Pair, stride: Pair, dilation: Pair, axes: Pair = (2, 3), writeable: bool = False
) -> np.ndarray:
    """The sliding windows of ``x_pad`` (N, C, Hp, Wp) as a view (N, C, OH, OW, KH, KW)::

        win[n, c, i, j, p, q] = x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

    A window of a dilated kernel spans ``dh*(KH-1) + 1`` rows; taking every ``dh``-th of
    them picks the taps, and every ``sh``-th window start gives the stride. ``axes`` names
    the (height, width) axes when the layout is another, e.g. (1, 2) for (C, Hp, Wp, N),
    whose windows are (C, OH, OW, N, KH, KW). ``writeable`` is only for scatter-adds that
    write one tap ``[..., p, q]`` at a time, whose elements are all distinct.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    win = sliding_window_view(x_pad, span, axis=axes, writeable=writeable)
    steps = [slice(None)] * x_pad.ndim + [slice(None, None, dh), slice(None, None, dw)]
    steps[axes[0]], steps[axes[1]] = slice(None, None, sh), slice(None, None, sw)
    return win[tuple(steps)]


def _batch_chunks(batch: int, bytes_per_sample: int) -> Iterator[slice]:
    """Slices of the batch axis, each holding about ``_CHUNK_BYTES`` of im2col matrix."""
    step = max(1, _CHUNK_BYTES // max(1, bytes_per_sample))
    for start in range(0, batch, step):
        yield slice(start, min(start + step, batch))


# ----------------------------------------------------------------------------------------
# Convolution (cross-correlation, as in PyTorch).
# ----------------------------------------------------------------------------------------


def _im2col(x_pad: np.ndarray, kernel_size: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """The windows of ``x_pad`` (B, C, Hp, Wp) copied into a matrix (C*KH*KW, B*OH*OW)::

        cols[(c, p, q), (n, i, j)] = x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

    Rows are the taps the convolution sums over, so ``weight.reshape(O, -1) @ cols`` is the
    convolution. Putting the output positions ``(i, j)`` innermost makes the copy read and
    write whole image rows at a time.
    """
    win = _windows(x_pad, kernel_size, stride, dilation)  # (B, C, OH, OW, KH, KW)
    cols = np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3))  # (C, KH, KW, B, OH, OW)
    return cols.reshape(cols.shape[0] * cols.shape[1] * cols.shape[2], -1)


def conv2d_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """Cross-correlation ``y = conv2d(x, weight) + bias``::

        y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

    x (N, C, H, W), weight (O, C, KH, KW), bias (O,) or None -> y (N, O, OH, OW). Per batch
    chunk, one matrix product ``(O, C*KH*KW) @ (C*KH*KW, B*OH*OW)`` does the whole sum.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = output_size(w, kw, stride[1], padding[1], dilation[1])
    w_mat = weight.reshape(o, -1)
    x_pad = _pad(x, padding)
    y = np.empty((n, o, oh, ow), dtype=np.result_type(x, weight))
    for batch in _batch_chunks(n, c * kh * kw * oh * ow * x.itemsize):
        y_chunk = w_mat @ _im2col(x_pad[batch], (kh, kw), stride, dilation)  # (O, B*OH*OW)
        if bias is not None:
            y_chunk += bias[:, None]  # while the chunk is still in cache
        y[batch] = y_chunk.reshape(o, -1, oh, ow).transpose(1, 0, 2, 3)
    return y


def conv2d_grad_input(
    grad_output: np.ndarray, weight: np.ndarray, input_size: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """dL/dx of the convolution (also the transposed convolution's forward)::

        gx[n,c,h,w] = sum over (o, i, j, p, q) with i*sh + p*dh = h + ph and
                      j*sw + q*dw = w + pw  of  gy[n,o,i,j] * w[o,c,p,q]

    grad_output (N, O, OH, OW), weight (O, C, KH, KW), input_size (H, W) -> (N, C, H, W).
    The transpose of the forward pass: ``cols = W^T @ gy`` gives, for every tap, the
    gradient of the pixel that tap read (col2im's input); adding each tap's slice back onto
    the padded image and cropping the padding gives gx. Pixels no window reads stay 0.

    Layout: numpy adds a tap's slice one image row of ``OW`` values at a time (10 in LeNet's
    second convolution, 7 in MedCNN's last block), and at such sizes that loop, not the
    matrix product, took most of the time. So when the taps add far more values than the
    gradients hold, the batch becomes the innermost axis of ``gy``, ``cols`` and the padded
    gradient (C, Hp, Wp, B): a slice then moves runs of ``OW * B`` (stride 1) or ``B``
    values. That costs transposing ``gy`` and ``gx`` once each, which the adds repay when
    they outnumber the values those two copies move at least twice over (measured: one
    input channel or a 1 x 1 input is faster with the images whole, (C, B, Hp, Wp)).
    """
    n, o, oh, ow = grad_output.shape
    _, c, kh, kw = weight.shape
    h, w = input_size
    ph, pw = padding
    if (oh, ow, ph, pw, *dilation) == (1, 1, 0, 0, 1, 1) and (h, w) == (kh, kw):
        # One window that covers the whole input (DCGAN's first generator layer and last
        # discriminator layer) is a linear layer: gx = gy (N, O) @ w (O, C*KH*KW). Every pixel
        # gets exactly one tap, so there is nothing to add, and the tap loop below would only
        # scatter the product's values one strided slice at a time (10x slower).
        return (grad_output.reshape(n, o) @ weight.reshape(o, -1)).reshape(n, c, h, w)
    tap_adds, transposed = c * kh * kw * oh * ow, o * oh * ow + c * h * w  # per image
    # The order of the (B, C, H, W) axes in memory, and where height and width land.
    order = (1, 2, 3, 0) if tap_adds > 2 * transposed else (1, 0, 2, 3)
    axes = (order.index(2), order.index(3))
    wt_mat = np.ascontiguousarray(weight.reshape(o, -1).T)  # (C*KH*KW, O); BLAS is slower on a transposed operand
    grad_input = np.empty((n, c, h, w), dtype=np.result_type(grad_output, weight))
    for batch in _batch_chunks(n, c * kh * kw * oh * ow * grad_output.itemsize):
        gy = grad_output[batch].transpose(order)  # (O, OH, OW, B) or (O, B, OH, OW)
        cols = (wt_mat @ gy.reshape(o, -1)).reshape(c, kh, kw, *gy.shape[1:])
        padded = (gy.shape[order.index(0)], c, h + 2 * ph, w + 2 * pw)
        gx_pad = np.zeros([padded[axis] for axis in order], dtype=grad_input.dtype)
        # A larger input_size (conv_transpose2d's output_padding) fits more windows than
        # grad_output has; only the first OH x OW of them were used: cut to gy's shape.
        gx_win = _windows(gx_pad, (kh, kw), stride, dilation, axes, writeable=True)
        gx_win = gx_win[:, : gy.shape[1], : gy.shape[2], : gy.shape[3]]
        for p in range(kh):
            for q in range(kw):
                gx_win[..., p, q] += cols[:, p, q]
        grad_input[batch] = gx_pad.transpose(np.argsort(order))[:, :, ph : ph + h, pw : pw + w]
    return grad_input


def conv2d_grad_weight(
    x: np.ndarray, grad_output: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """dL/dw of the convolution::

        gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

    x (N, C, H, W), grad_output (N, O, OH, OW), kernel_size (KH, KW) -> (O, C, KH, KW).
    Per batch chunk one product ``gw^T += cols @ gy_rows`` with ``gy_rows`` (B*OH*OW, O);
    the chunks are summed in a fixed order, so the result is deterministic. Both operands
    lie in memory as the product reads them: OpenBLAS read a transposed ``cols.T`` over
    this long inner dimension up to 2x slower on one thread, and far slower on two.
    """
    n, c, _, _ = x.shape
    _, o, oh, ow = grad_output.shape
    kh, kw = kernel_size
    x_pad = _pad(x, padding)
    grad_weight_t = np.zeros((c * kh * kw, o), dtype=np.result_type(x, grad_output))
    for batch in _batch_chunks(n, c * kh * kw * oh * ow * x.itemsize):
        cols = _im2col(x_pad[batch], kernel_size, stride, dilation)  # (C*KH*KW, B*OH*OW)
        gy_rows = grad_output[batch].transpose(0, 2, 3, 1).reshape(-1, o)  # (B*OH*OW, O), same (n, i, j) order
        grad_weight_t += cols @ gy_rows
    return grad_weight_t.T.reshape(o, c, kh, kw)


# ----------------------------------------------------------------------------------------
# Max pooling.
# ----------------------------------------------------------------------------------------


def max_pool2d_forward(
    x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[np.ndarray, np.ndarray]:
    """``y[n,c,i,j] = max_{p,q} x_pad[n, c, i*sh + p*dh, j*sw + q*dw]`` and its argmax.

    x (N, C, H, W) -> y, indices (N, C, OH, OW); ``x_pad`` is padded with ``-inf`` and
    ``indices`` (int64) is the flat position ``h*W + w`` of the maximum in the unpadded
    plane. Two passes over the ``KH*KW`` taps, each tap a whole strided slice of the windows:

    1. the maximum: ``np.maximum`` tap after tap (a NaN wins, as in PyTorch);
    2. the argmax: the first tap, in row-major window order, that holds the maximum (so ties
       keep the first maximum, and a NaN maximum points at the first NaN), skipping the taps
       that fall in the padding (so a window of ``-inf`` values points at a real pixel).

    The argmax is kept as the tap's number ``p*KW + q`` (one byte) and turned into
    ``indices`` once at the end: the windows' temporaries stay small, which is what costs here.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh = output_size(h, kh, sh, ph, dh)
    ow = output_size(w, kw, sw, pw, dw)
    win = _windows(_pad(x, padding, value=-np.inf), kernel_size, stride, dilation)
    best = win[..., 0, 0].copy()
    for p in range(kh):
        for q in range(kw):
            np.maximum(best, win[..., p, q], out=best)
    # The unpadded row that tap p reads in output row i, and the column tap q reads in
    # output column j (negative, or past the edge, in the padding).
    rows = np.arange(oh)[:, None] * sh + np.arange(kh) * dh - ph  # (OH, KH)
    cols = np.arange(ow)[:, None] * sw + np.arange(kw) * dw - pw  # (OW, KW)
    best_is_nan = np.isnan(best)
    found = np.zeros(best.shape, dtype=bool)
    tap = np.zeros(best.shape, dtype=np.uint8 if kh * kw <= 256 else np.int64)
    for p in range(kh):
        for q in range(kw):
            value = np.ascontiguousarray(win[..., p, q])  # comparisons run faster on a contiguous copy
            hit = (value == best) | (best_is_nan & np.isnan(value))
            hit &= ((rows[:, p] >= 0) & (rows[:, p] < h))[:, None] & ((cols[:, q] >= 0) & (cols[:, q] < w))
            hit &= ~found  # only the first tap that holds the maximum
            found |= hit
            tap += hit.astype(tap.dtype) * (p * kw + q)
    # A window with no real pixel (all padding, possible with dilation) points, as the GPU
    # kernels do, at its first tap past the top-left padding.
    first = (rows < 0).sum(axis=1)[:, None] * kw + (cols < 0).sum(axis=1)  # (OH, OW)
    p, q = np.divmod(np.where(found, tap, first), kw)
    return best, (rows[:, :1] + p * dh) * w + (cols[:, 0] + q * dw)


def max_pool2d_backward(
    grad_output: np.ndarray,
    indices: np.ndarray,
    input_size: Pair,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
) -> np.ndarray:
    """Route each output gradient to the pixel its window picked::

        gx[n,c].flat[indices[n,c,i,j]] += gy[n,c,i,j]

    grad_output, indices (N, C, OH, OW), input_size (H, W) -> (N, C, H, W). Overlapping
    windows can pick the same pixel, so this is a sum: ``np.add.at`` over the flat position
    in the whole (N, C, H, W) array adds all of a pixel's terms, unbuffered (a plain
    ``gx[flat] += gy`` would keep only one of them), in the fixed order of the outputs.

    The window geometry (``kernel_size``, ``stride``, ``padding``, ``dilation``) is part of
    the contract for the GPU kernels, where a thread owning one input pixel needs it to
    find the few windows that cover that pixel. It is not used here: ``np.add.at`` already
    adds every pixel's terms, with no search at all.
    """
    n, c, oh, ow = grad_output.shape
    h, w = input_size
    plane = np.arange(n * c).reshape(n, c, 1, 1) * (h * w)  # start of each (n, c) plane
    grad_input = np.zeros(n * c * h * w, dtype=grad_output.dtype)
    np.add.at(grad_input, (plane + indices).ravel(), grad_output.ravel())
    return grad_input.reshape(n, c, h, w)


# ----------------------------------------------------------------------------------------
# Affine: y = W x + b.
# ----------------------------------------------------------------------------------------


def gemm(
    a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None, trans_a: bool = False, trans_b: bool = False
) -> np.ndarray:
    """``c = op(a) @ op(b) + bias``, ``op(m) = m.T`` when its flag is set.

    a, b 2-D; bias (cols,) broadcast over the rows. ``linear`` is ``gemm(x, W, b,
    trans_b=True)``: a batch of ``y = W x + b`` with the samples as rows. A transpose here
    is a view; BLAS reads it transposed without copying.
    """
    c = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if bias is not None:
        c += bias
    return c


# ----------------------------------------------------------------------------------------
# Scaled dot-product attention: softmax(Q K^T / sqrt(d_k)) V.
# ----------------------------------------------------------------------------------------


def _scores(q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, scale: float, is_causal: bool) -> np.ndarray:
    """``s = scale * q @ k^T + mask`` (B, Lq, Lk), with ``-inf`` where a key is removed.

    ``is_causal`` removes every key ``j > i`` (top-left aligned, as PyTorch). Shared by the
    forward and backward passes so both see exactly the same scores. ``k^T`` stays a view:
    BLAS reads it transposed, and a contiguous copy cost more than it saved (measured).
    """
    s = q @ k.transpose(0, 2, 1)
    s *= scale
    if mask is not None:
        s += mask
    if is_causal:
        lq, lk = s.shape[1:]
        key_after_query = np.arange(lk) > np.arange(lq)[:, None]  # (Lq, Lk): j > i
        # A masked copy, broadcast over the batch: 3x faster than indexing s with the mask.
        np.copyto(s, -np.inf, where=key_after_query)
    return s


def _exp_and_log_sum_exp(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The softmax of ``s`` (B, Lq, Lk) along its last axis, before it is normalised::

        e = exp(s - m)   total = sum_j e_j   lse = m + log(total)   softmax(s) = e / total

    with ``m`` the row maximum; returns ``e`` (B, Lq, Lk), ``total`` (B, Lq, 1) and ``lse``
    (B, Lq). Stable: ``exp(s_j - m) <= 1`` never overflows. A row whose keys are all removed
    has ``m = -inf``; it is shifted by 0 instead, so its ``e`` is all 0 and no
    ``-inf - -inf = nan`` appears; its ``lse`` is ``-inf`` and its ``total`` is set to 1, so
    dividing by it leaves 0. ``e`` overwrites ``s``: the scores are not needed afterwards,
    and not allocating a second (B, Lq, Lk) array saves a quarter of the forward pass at
    L = 1024.
    """
    m = s.max(axis=-1, keepdims=True)
    m[np.isneginf(m)] = 0
    e = np.exp(np.subtract(s, m, out=s), out=s)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the intended answer
        lse = (m + np.log(total))[..., 0]
    total[total == 0] = 1
    return e, total, lse


def _probabilities(s: np.ndarray, lse: np.ndarray) -> np.ndarray:
    """``P = exp(s - lse) = softmax(s)`` from the saved ``lse``, with no row maximum or sum
    to recompute; a fully removed row (``lse = -inf``) gives 0. Overwrites ``s``."""
    finite_lse = np.where(np.isneginf(lse), 0, lse)
    return np.exp(np.subtract(s, finite_lse[..., None], out=s), out=s)


def attention_forward(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, scale: float, is_causal: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled dot-product attention and its log-sum-exp::

        s   = scale * q @ k^T + mask                 (B, Lq, Lk)
        out = softmax(s, axis=-1) @ v                (B, Lq, Dv)
        lse = log(sum_j exp(s[..., j]))              (B, Lq)

    q (B, Lq, D), k (B, Lk, D), v (B, Lk, Dv); mask None or additive (B, Lq, Lk). A row
    with every key removed gives ``out = 0`` and ``lse = -inf`` ("safe softmax").

    ``softmax(s) @ v = (e @ v) / total``: dividing after the product divides Lq*Dv values
    instead of the Lq*Lk probabilities (16x fewer at L = 1024, D = 64).
    """
    e, total, lse = _exp_and_log_sum_exp(_scores(q, k, mask, scale, is_causal))
    out = e @ v
    out /= total
    return out, lse


def attention_backward(
    grad_out: np.ndarray,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    out: np.ndarray,
    lse: np.ndarray,
    mask: np.ndarray | None,
    scale: float,
    is_causal: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`attention_forward` from its saved ``out`` and ``lse``::

        P  = exp(s - lse)                  the softmax, recomputed instead of stored
        D  = rowsum(grad_out * out)        (B, Lq)  = rowsum(P * (grad_out @ v^T))
        dS = P * (grad_out @ v^T - D)      softmax's Jacobian applied to dL/dP
        gq = scale * dS @ k,   gk = scale * dS^T @ q,   gv = P^T @ grad_out

    Shapes as in the forward pass; returns gq (B, Lq, D), gk (B, Lk, D), gv (B, Lk, Dv).
    A fully removed row has ``P = 0`` and so contributes nothing. ``D`` is an einsum: it
    multiplies and sums in one pass, with no (B, Lq, Dv) product array (4x faster at
    D = 32, where summing rows of 32 values one row at a time is slow).
    """
    p = _probabilities(_scores(q, k, mask, scale, is_causal), lse)
    d = np.einsum("bld,bld->bl", grad_out, out)[..., None]
    ds = grad_out @ v.transpose(0, 2, 1)
    ds -= d
    ds *= p
    ds *= scale  # folded in once here, for both gq and gk
    grad_q = ds @ k
    grad_k = ds.transpose(0, 2, 1) @ q
    grad_v = p.transpose(0, 2, 1) @ grad_out
    return grad_q, grad_k, grad_v
