"""Graders of chapter 11, Generating and repairing X-rays.

11.1 ``conv_transpose_output_size(size, kernel_size, stride, padding, output_padding, dilation)``:
     against the shape :func:`tinymed.functional.conv_transpose2d` actually produces, over the
     DCGAN's layers and a grid of settings, and a ValueError where that shape would not be positive.
11.2 ``frechet_distance_gaussians(mu1, sigma1, mu2, sigma2)``: against
     :func:`tinymed.metrics.frechet_distance` on covariances that do not commute, in one dimension,
     for identical Gaussians, and symmetric in its two arguments.
11.3 ``generator_loss(fake_logits)``: against ``F.binary_cross_entropy_with_logits(logits, 1)``,
     finite at logits of -1000 with the gradient -1/n there, and its gradient by gradcheck.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed import metrics
from tinymed.course.grading import Exercise, Fail, expect, expect_close, expect_gradcheck

__all__ = ["EXERCISES"]


def _actual_size(size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int) -> int | None:
    """The side tinymed's transposed convolution gives, or None where it refuses the settings."""
    x = tm.zeros(1, 1, size, size)
    w = tm.zeros(1, 1, kernel, kernel)
    try:
        return int(F.conv_transpose2d(x, w, None, stride, padding, output_padding, 1, dilation).shape[2])
    except ValueError:
        return None


def _grade_conv_transpose_output_size(ns: Mapping[str, Any]) -> None:
    student = ns["conv_transpose_output_size"]

    def size_of(*args: int) -> Any:
        try:
            return student(*args)
        except ValueError as e:
            raise Fail(
                f"conv_transpose_output_size{args} raised ValueError ({e}), but ConvTranspose2d accepts these "
                "settings: H_out = (H - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1"
            ) from None

    for size, k, s, p, want in ((1, 7, 1, 0, 7), (7, 4, 2, 1, 14), (14, 4, 2, 1, 28), (4, 4, 2, 0, 10)):
        got = size_of(size, k, s, p)
        expect(
            got == want,
            f"the DCGAN layer k={k}, s={s}, p={p} on a side of {size} gives {want}, you returned {got}: "
            "H_out = (H - 1) * stride - 2 * padding + kernel_size",
        )
    expect(isinstance(size_of(7, 4, 2, 1), int), f"return an int, got {type(size_of(7, 4, 2, 1)).__name__}")
    expect(size_of(5, 3) == 7, f"size_of(5, 3) must use stride 1 and padding 0 by default (7), got {size_of(5, 3)}")
    for size, k, s, p, d in itertools.product((1, 3, 6), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        for output_padding in sorted({0, min(s, d) - 1} | ({max(s, d) - 1} if max(s, d) > 1 else set())):
            want = _actual_size(size, k, s, p, output_padding, d)
            if want is None:
                continue
            got = size_of(size, k, s, p, output_padding, d)
            expect(
                got == want,
                f"size {size}, kernel {k}, stride {s}, padding {p}, output_padding {output_padding}, dilation {d}: "
                f"ConvTranspose2d gives {want}, you returned {got}; a dilated kernel spans dilation * (k - 1) + 1 "
                "pixels, and output_padding adds rows at the end",
            )
    for args in ((1, 1, 1, 1), (2, 2, 1, 2), (1, 3, 2, 2)):
        if _actual_size(*args, 0, 1) is None:
            try:
                got = student(*args)
            except ValueError:
                continue
            raise Fail(
                f"size {args[0]}, kernel {args[1]}, stride {args[2]}, padding {args[3]} gives a side of {got}; "
                "raise ValueError when the output would not be a positive size"
            )


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _grade_frechet_distance(ns: Mapping[str, Any]) -> None:
    fd = ns["frechet_distance_gaussians"]
    got = fd(np.array([0.3]), np.array([[2.25]]), np.array([-0.2]), np.array([[0.25]]))
    expect(isinstance(got, float), f"return a Python float, got {type(got).__name__}")
    expect_close(
        got,
        1.25,
        "the distance between N(0.3, 1.5^2) and N(-0.2, 0.5^2)",
        "in one dimension it is (mu1 - mu2)^2 + (sigma1 - sigma2)^2",
    )
    rng = np.random.default_rng(11)
    sigma1, sigma2 = _spd(rng, 4), _spd(rng, 4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    want = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    got = fd(mu1, sigma1, mu2, sigma2)
    entrywise = float(
        np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2) - 2 * np.trace(np.sqrt(np.abs(sigma1 @ sigma2)))
    )
    roots = [np.linalg.eigh(s) for s in (sigma1, sigma2)]
    root1, root2 = ((v * np.sqrt(w)) @ v.T for w, v in roots)
    product_of_roots = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2) - 2 * np.trace(root1 @ root2))
    if np.isclose(got, entrywise) and not np.isclose(got, want):
        raise Fail(
            f"full covariances: got {got:.6f}, expected {want:.6f}; np.sqrt takes the square root of each entry, "
            "not of the matrix: use np.linalg.eigh, S = V diag(l) V^T, sqrt(S) = V diag(sqrt(l)) V^T"
        )
    if np.isclose(got, product_of_roots) and not np.isclose(got, want):
        raise Fail(
            f"full covariances: got {got:.6f}, expected {want:.6f}; sqrt(sigma1) sqrt(sigma2) is (sigma1 sigma2)^(1/2) "
            "only when the two commute; take the trace of sqrt(sqrt(sigma1) sigma2 sqrt(sigma1)) instead"
        )
    expect_close(got, want, "the distance between two 4-D Gaussians with full covariances", rtol=1e-6, atol=1e-8)
    mu = rng.normal(size=4)
    sigma = _spd(rng, 4)
    expect_close(fd(mu, sigma, mu, sigma), 0.0, "the distance of a Gaussian to itself", atol=1e-7)
    diagonal1, diagonal2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    expect_close(
        fd(np.zeros(3), diagonal1, np.zeros(3), diagonal2),
        1.0 + 1.0 + 4.0,
        "diagonal covariances diag(1, 4, 9) and diag(4, 1, 1)",
        "with diagonal covariances each dimension adds its (sigma1 - sigma2)^2",
    )
    expect_close(fd(mu2, sigma2, mu1, sigma1), want, "the same two Gaussians in the other order", rtol=1e-6)
    flat = np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])  # rank 1: eigh finds eigenvalues near -5e-16 beside 14
    singular = "a covariance may be singular: clip the tiny negative eigenvalues round-off gives to 0 before the sqrt"
    what = "two Gaussians with the same rank-1 covariance, means 0 and 1"
    # Unclipped, the sqrt of a tiny negative eigenvalue is NaN, and eigh of a matrix holding NaN fails to converge.
    try:
        got = fd(np.zeros(3), flat, np.ones(3), flat)
    except np.linalg.LinAlgError as e:
        raise Fail(f"{what}: np.linalg raised LinAlgError ({e}); {singular}") from None
    expect_close(got, 3.0, what, singular, atol=1e-6)


def _grade_generator_loss(ns: Mapping[str, Any]) -> None:
    loss_of = ns["generator_loss"]
    logits = np.array([-3.0, -0.5, 0.0, 1.0, 4.0])
    loss = loss_of(tm.tensor(logits))
    expect(isinstance(loss, tm.Tensor), f"return a tinymed Tensor (so backward works), got {type(loss).__name__}")
    expect(loss.ndim == 0, f"return the mean over the batch, a 0-d Tensor, got shape {tuple(loss.shape)}")
    want = F.binary_cross_entropy_with_logits(tm.tensor(logits), tm.ones(5, dtype=tm.float64)).item()
    if np.isclose(loss.item(), np.mean(np.log1p(-1 / (1 + np.exp(-logits))))):
        raise Fail(
            "you wrote the saturating loss log(1 - sigmoid(l)), the one that gives no gradient early in training; "
            "the generator minimises -log sigmoid(l)"
        )
    expect_close(
        loss.item(), want, "the loss of logits [-3, -0.5, 0, 1, 4]", "-log sigmoid(l), averaged over the batch"
    )
    # Not at exactly 0, where relu and abs have a kink and autograd's choice of slope there is a convention.
    x = tm.tensor(np.array([-1000.0, -50.0, 0.5, 50.0, 1000.0]), requires_grad=True)
    loss = loss_of(x)
    expect(
        np.isfinite(loss.item()),
        f"logits [-1000, -50, 0.5, 50, 1000] gave {loss.item()}: at l = -1000, exp(-l) overflows to inf, or "
        "sigmoid(l) rounds to 0 and log(0) is -inf; use -log sigmoid(l) = max(-l, 0) + log(1 + exp(-|l|)), which "
        "only ever exponentiates -|l|",
    )
    expect_close(
        loss.item(), (1000 + 50 + np.log1p(np.exp(-0.5))) / 5, "the loss of logits [-1000, -50, 0.5, 50, 1000]"
    )
    loss.backward()
    grad = np.asarray(x.grad, dtype=np.float64)
    expect(
        bool(np.all(np.isfinite(grad))),
        f"the gradient at logits [-1000, -50, 0.5, 50, 1000] is {grad.tolist()}: some step divides inf by inf; "
        "build the loss from relu, abs, exp and log as the exercise shows",
    )
    expect_close(
        grad,
        np.array([-1.0, -1.0, -1 / (1 + np.exp(0.5)), 0.0, 0.0]) / 5,
        "the gradient at logits [-1000, -50, 0.5, 50, 1000]",
        "d/dl of -log sigmoid(l) is -(1 - sigmoid(l)): -1 where D rejects the image, which is the point of this loss",
        atol=1e-12,
    )
    rng = np.random.default_rng(11)
    z = tm.tensor(3 * rng.normal(size=(6,)), requires_grad=True)
    expect_gradcheck(loss_of, [z], "generator_loss", "compute the loss with tinymed operations on the logits only")


EXERCISES = (
    Exercise(
        "11.1",
        "conv_transpose_output_size",
        "the output side of ConvTranspose2d from size, kernel, stride, padding, output_padding and dilation",
        _grade_conv_transpose_output_size,
    ),
    Exercise(
        "11.2",
        "frechet_distance_gaussians",
        "the Frechet distance between two Gaussians, with a matrix square root by eigendecomposition",
        _grade_frechet_distance,
    ),
    Exercise(
        "11.3",
        "generator_loss",
        "the generator's non-saturating loss, mean -log sigmoid(logits), without overflow",
        _grade_generator_loss,
    ),
)
