"""Tutorial 2: the convolution formula, its flip, and how it becomes one matrix product.

Run it:  python tutorials/legacy_convolution.py (chapter 2, tutorials/02_convolution.py, replaces it)

The course writes convolution as

    y(x, y) = sum_i sum_j w(i, j) * x(x - i, y - j)            (true convolution)

Deep-learning frameworks, tinymed and PyTorch included, compute cross-correlation

    y[i, j] = sum_p sum_q w[p, q] * x[i + p, j + q]

The two differ only by a flip of the kernel in both axes. We show it with literal loops,
then show how tinymed's reference turns the sum into im2col + one matrix product.
"""

import numpy as np

import tinymed as tm
import tinymed.functional as F

rng = np.random.default_rng(0)
image = rng.standard_normal((5, 6))
kernel = rng.standard_normal((3, 3))
K = kernel.shape[0]


def true_convolution(x, w):
    """The formula as written: output (a, b) sums w(i, j) x(a - i, b - j) ('valid' part)."""
    out = np.zeros((x.shape[0] - K + 1, x.shape[1] - K + 1))
    for a in range(out.shape[0]):
        for b in range(out.shape[1]):
            # shift to 'valid' coordinates: the output pixel (a, b) sits at (a + K-1, b + K-1)
            out[a, b] = sum(w[i, j] * x[a + K - 1 - i, b + K - 1 - j] for i in range(K) for j in range(K))
    return out


def cross_correlation(x, w):
    """What conv2d computes: no flip."""
    out = np.zeros((x.shape[0] - K + 1, x.shape[1] - K + 1))
    for a in range(out.shape[0]):
        for b in range(out.shape[1]):
            out[a, b] = sum(w[p, q] * x[a + p, b + q] for p in range(K) for q in range(K))
    return out


flipped = kernel[::-1, ::-1]
print(
    "true convolution == cross-correlation with the flipped kernel:",
    np.allclose(true_convolution(image, kernel), cross_correlation(image, flipped)),
)
assert np.allclose(true_convolution(image, kernel), cross_correlation(image, flipped))

# tinymed's conv2d is the cross-correlation (so weights compare one to one with PyTorch):
x = tm.tensor(image[None, None])  # (N=1, C=1, H, W)
w = tm.tensor(flipped.copy()[None, None])  # (O=1, C=1, KH, KW)
y = F.conv2d(x, w)
assert np.allclose(y.numpy()[0, 0], true_convolution(image, kernel))
print("F.conv2d with the flipped kernel reproduces the formula as written")

# --- im2col: the sum over (c, p, q) as one matrix product ------------------------------
# Each column of `cols` is one output position's window, each row one kernel tap. Then the
# whole convolution is weight (O, C*KH*KW) @ cols (C*KH*KW, OH*OW).
oh, ow = image.shape[0] - K + 1, image.shape[1] - K + 1
cols = np.stack([image[p : p + oh, q : q + ow].ravel() for p in range(K) for q in range(K)])
print("im2col matrix:", cols.shape, "(taps x output positions)")
by_gemm = (flipped.reshape(1, -1) @ cols).reshape(oh, ow)
assert np.allclose(by_gemm, y.numpy()[0, 0])
print("weight @ im2col == conv2d")

# --- output size: (H + 2*padding - dilation*(K-1) - 1) // stride + 1 --------------------
for stride, padding, dilation in [(1, 0, 1), (2, 1, 1), (1, 2, 2)]:
    out = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    expected = (image.shape[0] + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    print(f"stride {stride}, padding {padding}, dilation {dilation}: output height {out.shape[2]} (formula {expected})")
    assert out.shape[2] == expected
