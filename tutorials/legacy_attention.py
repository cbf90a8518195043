"""Tutorial 3: scaled dot-product attention, and computing it without the L x L matrix.

Run it:  python tutorials/legacy_attention.py (chapter 5, tutorials/05_attention.py, replaces it)

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

We compute it the way the formula reads, check tinymed's F.scaled_dot_product_attention
against it (masks included), then redo it the way the fused GPU kernels do: one block of
keys at a time with an "online" softmax, so the Lq x Lk score matrix is never stored
(FlashAttention's idea).
"""

import numpy as np

import tinymed as tm
import tinymed.functional as F

rng = np.random.default_rng(0)
Lq, Lk, d_k, d_v = 5, 7, 4, 3
Q, K, V = rng.standard_normal((Lq, d_k)), rng.standard_normal((Lk, d_k)), rng.standard_normal((Lk, d_v))

# --- 1. The formula as written -------------------------------------------------------
scores = Q @ K.T / np.sqrt(d_k)  # (Lq, Lk): how well query i matches key j
weights = np.exp(scores - scores.max(axis=1, keepdims=True))
weights /= weights.sum(axis=1, keepdims=True)  # each row sums to 1
reference = weights @ V  # (Lq, d_v): a weighted mean of the values

out = F.scaled_dot_product_attention(tm.tensor(Q), tm.tensor(K), tm.tensor(V))
assert np.allclose(out.numpy(), reference)
print("F.scaled_dot_product_attention == softmax(Q K^T / sqrt(d_k)) V")

# --- 2. Masks: a boolean mask says which keys a query may look at ----------------------
# True = may attend (PyTorch's convention). Removing a key is adding -inf to its score.
allowed = rng.random((Lq, Lk)) > 0.3
allowed[:, 0] = True  # every query keeps at least one key
masked_scores = np.where(allowed, scores, -np.inf)
masked = np.exp(masked_scores - masked_scores.max(axis=1, keepdims=True))
masked = masked / masked.sum(axis=1, keepdims=True) @ V
out = F.scaled_dot_product_attention(tm.tensor(Q), tm.tensor(K), tm.tensor(V), attn_mask=tm.tensor(allowed))
assert np.allclose(out.numpy(), masked)
print("a boolean mask is -inf added to the removed scores")

# --- 3. The online softmax: one block of keys at a time --------------------------------
# Keep, per query row, the running maximum m, the running sum of exp(s - m) and the running
# weighted sum of values. When a new block raises the maximum, rescale what we have by
# exp(m_old - m_new): the result is exact, and memory is O(Lq * block), not O(Lq * Lk).
block = 3
m = np.full(Lq, -np.inf)
total = np.zeros(Lq)
acc = np.zeros((Lq, d_v))
for start in range(0, Lk, block):
    s = Q @ K[start : start + block].T / np.sqrt(d_k)  # (Lq, block) scores of this block only
    m_new = np.maximum(m, s.max(axis=1))
    rescale = np.exp(m - m_new)  # 0 on the first block (m = -inf)
    p = np.exp(s - m_new[:, None])
    total = total * rescale + p.sum(axis=1)
    acc = acc * rescale[:, None] + p @ V[start : start + block]
    m = m_new
online = acc / total[:, None]
assert np.allclose(online, reference)
print(f"online softmax over blocks of {block} keys == the full softmax")

# The log-sum-exp m + log(total) is all the backward pass needs to rebuild the
# probabilities: the backend primitive returns it beside the output.
lse = m + np.log(total)
assert np.allclose(lse, np.log(np.exp(scores).sum(axis=1)))
print("log-sum-exp saved for backward:", np.round(lse, 3))

# --- 4. Gradients check out ----------------------------------------------------------
q = tm.tensor(Q, requires_grad=True)
k = tm.tensor(K, requires_grad=True)
v = tm.tensor(V, requires_grad=True)
assert tm.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [q, k, v])
print("gradcheck of causal attention: autograd matches finite differences")
