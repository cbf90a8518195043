"""embedding: a lookup table, the first layer of every model that reads tokens or categories.

The formula is a row selection, ``y[...] = W[i[...]]``: a (V, D) weight and integer indices
of any shape give indices.shape + (D,). It is the same as ``one_hot(i) @ W`` without building
the one-hot matrix, and its backward is that product's: row k of dL/dW is the sum of the
output gradients at every position whose index is k (rows never looked up get zero).
"""

from __future__ import annotations

from tinymed.autograd import Function, same_device
from tinymed.ops.arguments import float_tensor, only_default
from tinymed.tensor import Tensor


class _Embedding(Function):
    """y[...] = W[i[...]];  dL/dW[k] = sum over the positions p with i[p] = k of dL/dy[p],
    zero at ``padding_idx`` (that row is never learnt), and divided by the number of such
    positions with ``scale_grad_by_freq``."""

    def forward(self, weight, indices, padding_idx, scale_grad_by_freq):
        self.shape, self.indices = weight.shape, indices.reshape(-1)
        self.padding_idx, self.scale_grad_by_freq = padding_idx, scale_grad_by_freq
        return weight[indices]

    def backward(self, grad):
        xp = self.xp
        rows = grad.reshape(-1, self.shape[1])
        if self.scale_grad_by_freq:
            counts = xp.bincount(self.indices, minlength=self.shape[0])
            rows = rows / counts[self.indices][:, None].astype(rows.dtype)
        grad_weight = xp.zeros(self.shape, dtype=grad.dtype)
        xp.add.at(grad_weight, self.indices, rows)
        if self.padding_idx is not None:
            grad_weight[self.padding_idx] = 0
        return grad_weight, None


def _renorm_rows(weight: Tensor, indices: Tensor, max_norm: float, norm_type: float) -> None:
    """Scale, in place and outside the graph, each looked-up row of ``weight`` whose
    ``norm_type``-norm exceeds ``max_norm`` down to that norm (times max_norm / (norm + 1e-7),
    as PyTorch)."""
    xp = weight.device.backend.xp
    rows = xp.unique(indices.array)
    norms = (xp.abs(weight.array[rows]) ** norm_type).sum(axis=1) ** (1.0 / norm_type)
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(weight.dtype)
    weight.array[rows] *= scale[:, None]


def embedding(
    input: Tensor,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Look up rows of ``weight`` (V, D): y = weight[input], shape input.shape + (D,).

    ``input`` holds integer indices in [0, V). ``padding_idx`` (negative counts from the end)
    names a row that gets no gradient. With ``max_norm`` the rows looked up are first
    rescaled in place to a ``norm_type``-norm of at most ``max_norm``, as PyTorch.
    ``scale_grad_by_freq`` divides each row's gradient by how often it was looked up.
    Only ``sparse=False`` (dense gradients)."""
    op = "embedding"
    only_default(op, "sparse", sparse, False)
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        got = f"dtype {input.dtype}" if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"{op}: input must be an integer tensor of indices, got {got}")
    float_tensor(op, "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    same_device(op, (weight, input))
    num = weight.shape[0]
    if input.numel() and (int(input.array.min()) < 0 or int(input.array.max()) >= num):
        raise IndexError(
            f"{op}: indices must be in [0, {num}) for weight {weight.shape}, "
            f"got values in [{int(input.array.min())}, {int(input.array.max())}]"
        )
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"{op}: padding_idx must be within num_embeddings ({num}), got {padding_idx}")
        padding_idx %= num
    if max_norm is not None:
        _renorm_rows(weight, input, max_norm, norm_type)
    return _Embedding.apply(weight, input, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
