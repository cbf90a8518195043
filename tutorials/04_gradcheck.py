# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 4 · Gradient checking
#
# Chapters 1 to 3 wrote a backward for every operation: the sigmoid's, the convolution's
# $\partial L/\partial W = \partial L/\partial Y\,\text{cols}^\top$, max pooling's routing
# through the argmax. Each was checked against something. But a backward is code, and code has
# bugs, and a network trained with a slightly wrong gradient does not crash: its loss still goes
# down. How do you know that the gradient your backward returns **is** the gradient? And when a
# check says it is not, how do you find the bug from what the check prints?
#
# This chapter builds the tool that answers, **gradient checking**: compare backward with
# derivatives estimated from forward passes alone, find out how accurate those estimates can be
# (and why that forces float64), learn to read a failing check, and use `tinymed.gradcheck` on
# an operation you write yourself.
#
# **Learning objectives.** After this chapter you can:
#
# - Estimate a gradient with central differences and bound its error.
# - Explain why gradient checks run in float64.
# - Read a failing check: which input, which element, by how much.
# - Check an op you wrote with `tinymed.gradcheck`.
#
# **You need** chapter 1 (`tm.Function`, `backward`) and chapter 3 (gradients of an affine
# layer, max pooling's ties). **Time**: about an hour with the exercises. Run it as a script
# (`python tutorials/04_gradcheck.py`, figures go to `tutorials/figures/04_gradcheck/`) or as a
# notebook (`tinymed course release DIR` writes both); with `TINYMED_FAST=1` it runs on less
# data.

# %%
import inspect
import re
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import tinymed as tm
import tinymed.functional as F
from tinymed import course, plots
from tinymed.gradcheck import GradcheckError

rng = np.random.default_rng(0)
print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. A wrong gradient still trains
#
# Take chapter 1's logistic regression on 7×7 X-ray thumbnails, and write the sigmoid another
# way, $\sigma(z) = \tfrac12\bigl(1 + \tanh(z/2)\bigr)$, which never overflows. Its derivative
# is $\tfrac12 \cdot \tfrac12\bigl(1 - \tanh^2(z/2)\bigr)$: one $\tfrac12$ from the outer
# formula, one from the chain rule through $z/2$. Forget the second, a slip anyone can make, and
# the backward is twice too large. Train with tinymed's own `tm.sigmoid` and with the slip, by
# plain gradient descent (SGD) and by Adam. The X-rays come from PneumoniaMNIST when it is on
# this machine and from tinymed's phantoms otherwise; the next line says which.


# %%
class SigmoidViaTanh(tm.Function):
    """sigma(z) = (1 + tanh(z / 2)) / 2, with a bug in its backward."""

    def forward(self, z):
        self.t = self.xp.tanh(z / 2)
        return (1 + self.t) / 2

    def backward(self, grad_output):
        return grad_output * (1 - self.t**2) / 2  # should be / 4: the chain rule's 1/2 from z / 2 is missing


# %%
train = course.xray_dataset("train", n=course.pick(None, 500))
pixels = train.images[:, 0].astype(np.float64) / 255.0
thumbs = pixels.reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(pixels), 49)
X, y = tm.tensor((thumbs - thumbs.mean(0)) / (thumbs.std(0) + 1e-8)), tm.tensor(train.labels.astype(np.float64))
steps = course.pick(150, 40)


def train_losses(sigmoid_fn, optimizer_class, lr):
    w, b = tm.zeros(49, dtype=tm.float64, requires_grad=True), tm.zeros(1, dtype=tm.float64, requires_grad=True)
    optimizer, losses = optimizer_class([w, b], lr=lr), []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy(sigmoid_fn(X @ w + b), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


runs = {
    f"{optimizer.__name__}, {name}": train_losses(fn, optimizer, lr)
    for optimizer, lr in [(tm.optim.SGD, 0.1), (tm.optim.Adam, 0.01)]
    for name, fn in [("tm.sigmoid", tm.sigmoid), ("with the slip", SigmoidViaTanh.apply)]
}
for name, losses in runs.items():
    print(f"{name:>20}: loss {losses[0]:.4f} -> {losses[-1]:.6f}")

# %%
history = [{"epoch": k + 1, **{name: losses[k] for name, losses in runs.items()}} for k in range(steps)]
panels = [
    plots.Panel(opt, "mean BCE loss", {"tm.sigmoid": f"{opt}, tm.sigmoid", "with the slip": f"{opt}, with the slip"})
    for opt in ("SGD", "Adam")
]
fig = plots.plot_curves(history, panels, title="a wrong gradient does not announce itself")
for ax in fig.axes:
    ax.set_xlabel("gradient step")
course.show(fig, "silent-bug")

# %% [markdown]
# With SGD the version with the bug trains *faster*: its steps are twice as large, as if the
# learning rate were doubled, and anyone would take it for a better setting. With Adam, which
# divides every step by the size of recent gradients, the two curves are the same to six
# digits: a gradient off by a constant factor is invisible. Other bugs are less polite (a wrong
# sign diverges), but many hide in a factor or in a branch that is rarely taken. Watching the
# loss cannot find them; comparing with the derivative can.
#
# ## 2. Derivatives from forward passes: forward and central differences
#
# The derivative is the limit of a slope. For a small $h$, **forward differences** and
# **central differences** estimate it from two evaluations of $f$:
#
# $$D_+(h) = \frac{f(x+h) - f(x)}{h}, \qquad D_0(h) = \frac{f(x+h) - f(x-h)}{2h} .$$
#
# How good are they? Taylor's formula, $f(x \pm h) = f(x) \pm h f'(x) + \frac{h^2}{2}f''(x)
# \pm \frac{h^3}{6}f'''(x) + \dots$, gives
#
# $$D_+(h) = f'(x) + \frac{h}{2}f''(x) + O(h^2), \qquad
#   D_0(h) = f'(x) + \frac{h^2}{6}f'''(x) + O(h^4) .$$
#
# In the central difference the $h^2$ terms cancel, so its error falls with $h^2$ instead of
# $h$: ten times smaller $h$, a hundred times smaller error. On the sigmoid at $x = 0.5$, whose
# derivative $\sigma(1-\sigma)$ we know exactly:


# %%
def sigmoid(x):
    return 1 / (1 + np.exp(-x))  # in x's precision: NumPy keeps float32 as float32


x0 = 0.5
exact = sigmoid(x0) * (1 - sigmoid(x0))
print("     h    forward error    central error")
for h in [1e-1, 1e-2, 1e-3, 1e-4]:
    forward = (sigmoid(x0 + h) - sigmoid(x0)) / h
    central = (sigmoid(x0 + h) - sigmoid(x0 - h)) / (2 * h)
    print(f"{h:6.0e}    {abs(forward - exact):.3e}        {abs(central - exact):.3e}")

# %% [markdown]
# The table bears the formula out: each column falls by 10 and by 100 per row. And the
# formula bounds the error: here $|f''| \le 0.1$ and $|f'''| \le 0.125$ everywhere, so at
# $h = 10^{-3}$ the central difference cannot be off by more than $0.125 \cdot 10^{-6}/6
# \approx 2\cdot 10^{-8}$.
#
# ## 3. Truncation against round-off
#
# So take $h$ as small as possible? No: $f(x+h)$ and $f(x-h)$ are computed in floating point,
# each with a relative error of about the **machine epsilon** $\varepsilon$ ($2.2\cdot
# 10^{-16}$ in float64, $1.2\cdot 10^{-7}$ in float32). Their difference keeps that absolute
# error, about $\varepsilon |f|$, while the true difference shrinks with $h$; dividing by $h$
# turns it into an error of about $\varepsilon |f| / h$, which **grows** as $h$ shrinks. The
# total error of the central difference is about
#
# $$\frac{h^2}{6}|f'''| + \frac{\varepsilon |f|}{h}, \qquad \text{smallest near}\quad h \approx
#   \varepsilon^{1/3} .$$
#
# In float64 that is $h \approx 6\cdot10^{-6}$ (tinymed's gradcheck uses $10^{-6}$) with an
# error of $10^{-11}$ or less; for forward differences, $h \approx \sqrt{\varepsilon} \approx
# 10^{-8}$ and an error a few hundred times larger. Measured over fifteen decades of $h$, in
# both precisions:

# %%
hs = np.logspace(-15, -0.5, 60)
errors = {}
for dtype in (np.float64, np.float32):
    x_, h_ = dtype(x0), hs.astype(dtype)  # every value, and so every operation, in this precision
    errors[f"forward, {np.dtype(dtype).name}"] = np.abs((sigmoid(x_ + h_) - sigmoid(x_)) / h_ - exact)
    errors[f"central, {np.dtype(dtype).name}"] = np.abs((sigmoid(x_ + h_) - sigmoid(x_ - h_)) / (2 * h_) - exact)
for name, e in errors.items():
    print(f"{name:>17}: smallest error {e.min():.0e} at h = {hs[e.argmin()]:.0e}")

# %%
fig = Figure(figsize=(8, 5), layout="constrained")
ax = fig.subplots()
styles = {"forward, float64": "C0--", "central, float64": "C0-", "forward, float32": "C3--", "central, float32": "C3-"}
for name, e in errors.items():
    ax.loglog(hs, np.where(e > 0, e, np.nan), styles[name], label=name, lw=1.5)
ax.loglog(hs, hs / 2 * 0.1, "k:", lw=1, label="slope 1: h f''/2")
ax.loglog(hs, hs**2 / 6 * 0.125, "k-.", lw=1, label="slope 2: h² f'''/6")
ax.axvline(1e-6, color="grey", lw=0.8)
ax.text(1.2e-6, 1e-14, "gradcheck's eps", color="grey", rotation=90, va="bottom")
ax.set(xlabel="step h", ylabel="|estimate - exact derivative|", ylim=(1e-15, 10))
ax.set_title("truncation error falls with h, round-off error grows as h shrinks")
ax.legend(fontsize=8, loc="lower left", ncol=2)
course.show(fig, "error-vs-h")

# %% [markdown]
# Read the V shapes from right to left. On the right, truncation dominates and the lines
# follow their slopes (1 for forward, 2 for central). Past the bottom of each V, round-off takes
# over and the error grows like $1/h$. In float32 the bottom of the central V sits near
# $h = 10^{-2}$ with an error of about $10^{-6}$ at best, relative to a derivative of $0.24$;
# below $h \approx 10^{-8}$, $x + h$ rounds back to $x$ and the estimate is 0 (the error is the
# whole derivative).
#
# ## 4. Why float64
#
# A check compares two numbers and must tell "equal up to the estimate's error" from "a bug".
# In float64 the central difference is good to about $10^{-10}$ relative, so a disagreement of
# $10^{-5}$ can only be a bug. In float32 the estimate is off by $10^{-6}$ at the best $h$
# (section 3's plot) and by a few times $10^{-3}$ at gradcheck's $h = 10^{-6}$, worse with
# larger values of $f$ and after summing many terms, so a tolerance loose enough to let
# a correct backward pass also lets a bug of that size through. That is why `tm.gradcheck`
# insists on float64 inputs, and says so:

# %%
t32 = tm.randn(3, dtype=tm.float32, requires_grad=True)
try:
    tm.gradcheck(tm.sigmoid, [t32])
except TypeError as error:
    print("TypeError:", error)
else:
    raise AssertionError("gradcheck was expected to refuse float32")

# %% [markdown]
# This is also why the GPU kernels of chapters 6 and 7, which run in float32, are tested
# differently: against the float64 NumPy reference, with tolerances set by float32's epsilon,
# not by finite differences.
#
# ## 5. From one number to a tensor: what `tm.gradcheck` does
#
# An operation maps tensors to a tensor, so "the gradient" is a whole **Jacobian**, the matrix
# of every output element's derivative with respect to every input element. `tm.gradcheck`
# avoids building it. It draws a fixed random tensor $v$ of the output's shape and checks the
# scalar
#
# $$L(x) = \langle v, f(x) \rangle = \sum_k v_k f(x)_k .$$
#
# Autograd gives $\partial L/\partial x$ in one backward pass, started from $v$ (the
# `grad_output` every backward receives). Central differences estimate the same numbers one
# input element at a time: perturb element $i$ by $\pm h$, run two forward passes, take the
# difference, put the element back. Element $i$ passes when
#
# $$|a_i - n_i| \le \text{atol} + \text{rtol}\cdot |n_i| ,$$
#
# $a$ from autograd, $n$ from the differences, with `atol=1e-5`, `rtol=1e-3` by default. For
# the first input that fails, its worst element is reported: which input, which index, both
# values.
# The file:

# %%
package_root = Path(tm.__file__).parent.parent
print(Path(inspect.getsourcefile(tm.gradcheck)).relative_to(package_root), inspect.signature(tm.gradcheck))
print(inspect.getdoc(tm.gradcheck))

# %% [markdown]
# Two consequences. It costs **two forward passes per input element**: checking a 28×28
# image costs 1,568 of them, so checks use tiny tensors. And the random $v$ matters: section 7
# shows a bug that a check with $v = 1$ (that is, of `f(x).sum()`) cannot see.
#
# ## 6. An operation to check: smooth L1
#
# Regression losses in medical imaging (how far is the predicted box around a nodule from the
# radiologist's box?) often use the **smooth L1** function of the error $d$ (the Huber loss
# divided by its threshold $\beta$): quadratic
# near zero, so its gradient fades smoothly as the error vanishes, linear far away, so one wild
# outlier does not dominate:
#
# $$s(d) = \begin{cases} \dfrac{d^2}{2\beta} & |d| < \beta \\[4pt] |d| - \dfrac{\beta}{2} &
#   \text{otherwise,} \end{cases} \qquad
#   s'(d) = \begin{cases} d/\beta & |d| < \beta \\ \operatorname{sign}(d) & \text{otherwise.}
#   \end{cases}$$
#
# As a tinymed Function (settings such as $\beta$ are keyword arguments of `apply`):


# %%
class SmoothL1(tm.Function):
    """Element-wise smooth L1: d^2 / (2 beta) where |d| < beta, |d| - beta / 2 elsewhere."""

    def forward(self, d, beta=1.0):
        self.d, self.beta = d, beta
        return self.xp.where(self.xp.abs(d) < beta, 0.5 * d * d / beta, self.xp.abs(d) - 0.5 * beta)

    def backward(self, grad_output):
        inside = self.xp.abs(self.d) < self.beta
        return grad_output * self.xp.where(inside, self.d / self.beta, self.xp.sign(self.d))


tm.manual_seed(0)
d = tm.randn(3, 4, dtype=tm.float64, requires_grad=True)
print("gradcheck(SmoothL1, beta=0.5):", tm.gradcheck(lambda t: SmoothL1.apply(t, beta=0.5), [d]))

# %% [markdown]
# It passes, on 12 random errors with $\beta = 0.5$ (some inside, some outside the quadratic
# zone: a check must visit every branch of the code it checks).
#
# ## 7. Reading a failing check
#
# Now two bugs, each one line. The first forgets to divide by $\beta$ in the quadratic zone;
# the second forgets to multiply by `grad_output`.


# %%
class ForgetsBeta(SmoothL1):
    def backward(self, grad_output):
        inside = self.xp.abs(self.d) < self.beta
        return grad_output * self.xp.where(inside, self.d, self.xp.sign(self.d))  # d, not d / beta


class IgnoresGradOutput(SmoothL1):
    def backward(self, grad_output):
        inside = self.xp.abs(self.d) < self.beta
        return self.xp.where(inside, self.d / self.beta, self.xp.sign(self.d))  # grad_output is dropped


def report(op):
    try:
        tm.gradcheck(lambda t: op.apply(t, beta=0.5), [d])
    except GradcheckError as error:
        return str(error)
    return "passes"


print("ForgetsBeta:", report(ForgetsBeta))

# %% [markdown]
# Read it in three steps:
#
# 1. **Which input**: input 0, of shape (3, 4): the only one here; with several inputs
#    (a weight and a bias), it tells you which gradient to look at.
# 2. **Which element**: the index of the worst disagreement. Look at the input there: is it
#    special (zero, a tie, a branch boundary)?
# 3. **By how much**: the ratio of the two numbers is often the diagnosis. A constant ratio is a
#    missing factor, $-1$ a sign error, an autograd value of 0 a gradient that never arrives.

# %%
index, autograd_value, numeric_value = re.search(
    r"index \(([\d, ]+)\): autograd (\S+), finite difference (\S+)", report(ForgetsBeta)
).groups()
index = tuple(int(i) for i in index.split(","))
print(f"d at {index} = {d.numpy()[index]:+.4f}: |d| < beta = 0.5, the quadratic zone")
print(f"autograd / finite difference = {float(autograd_value) / float(numeric_value):.4f} = beta: the missing 1/beta")

# %% [markdown]
# For an element-wise operation we can see the whole bug at once: every output depends on one
# input, so a single vectorised central difference of the forward pass gives the derivative at
# every point of a grid. (For a general operation, such as a convolution, each input element
# must be perturbed on its own: exercise 4.1.) Autograd's derivative against the truth, over
# $d \in [-1.5, 1.5]$:

# %%
grid = np.linspace(-1.5, 1.5, 301)
h = 1e-6
with tm.no_grad():
    truth = (
        SmoothL1.apply(tm.tensor(grid + h), beta=0.5).numpy() - SmoothL1.apply(tm.tensor(grid - h), beta=0.5).numpy()
    ) / (2 * h)
slopes = {}
for op in (SmoothL1, ForgetsBeta):
    t = tm.tensor(grid, requires_grad=True)
    op.apply(t, beta=0.5).sum().backward()  # element-wise, so d sum / d d_i = s'(d_i)
    slopes[op.__name__] = np.asarray(t.grad)
assert np.allclose(slopes["SmoothL1"], truth, atol=1e-6)

# %%
fig = Figure(figsize=(8, 4), layout="constrained")
ax = fig.subplots()
ax.axvspan(-0.5, 0.5, color="0.92", label="|d| < beta (quadratic zone)")
ax.plot(grid, truth, "k-", lw=3, alpha=0.35, label="central differences (the truth)")
ax.plot(grid, slopes["SmoothL1"], "C0--", label="autograd, SmoothL1")
ax.plot(grid, slopes["ForgetsBeta"], "C3-", label="autograd, ForgetsBeta")
ax.set(xlabel="error d", ylabel="ds/dd", title="where the bug lives: only inside the quadratic zone, by a factor beta")
ax.legend(fontsize=8)
course.show(fig, "where-the-bug-lives")

# %% [markdown]
# The second bug is sneakier. A check that calls `f(x).sum().backward()` starts backward from a
# `grad_output` of ones, and multiplying by ones is invisible: that check agrees with the true
# derivative. `tm.gradcheck` starts from a random $v$ instead, which a backward that drops
# `grad_output` cannot reproduce:

# %%
t = tm.tensor(d.numpy(), requires_grad=True)
IgnoresGradOutput.apply(t, beta=0.5).sum().backward()
true_slope = np.where(np.abs(d.numpy()) < 0.5, d.numpy() / 0.5, np.sign(d.numpy()))
print("check with .sum():", "agrees" if np.allclose(np.asarray(t.grad), true_slope) else "disagrees")
print("tm.gradcheck:", report(IgnoresGradOutput))

# %% [markdown]
# What the usual reports mean, collected:
#
# | what the report shows | likely cause |
# | --- | --- |
# | a constant ratio (2, 1/2, $\beta$) | a missing or extra factor |
# | ratio $-1$ | a sign error |
# | autograd 0 where the difference is not | the gradient is not returned, or not connected |
# | wrong only for some elements | a branch of the backward (look at the input there) |
# | wrong only at a special input (0, a tie) | a kink: not a bug (chapter 3's ties) |
# | passes with `.sum()`, fails with `gradcheck` | `grad_output` is ignored or misused |
# | fails in float32 only | the check, not the backward (section 4) |
#
# ## 8. Checking a small network
#
# `tm.gradcheck` checks any function of tensors, so it checks a stack of operations as
# easily as one: here a convolution, a ReLU and a max pool of chapters 2 and 3, with respect
# to both the input and the weights. Random float64 values keep the convolution's outputs away
# from ReLU's kink at 0 (with probability one), but not the pooling away from ties: a window
# whose four values the ReLU has all set to 0 is a four-way tie. The check still passes there,
# because the gradient through such a window is 0 on both sides: autograd sends it to one
# zero that the ReLU then blocks, and nudging any one input by $h$ leaves the window's maximum
# at 0. We count the forward passes it needs.

# %%
x = tm.randn(1, 2, 6, 6, dtype=tm.float64, requires_grad=True)
w = tm.randn(3, 2, 3, 3, dtype=tm.float64, requires_grad=True)
calls = []


def small_network(x, w):
    calls.append(1)
    return F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)


start = time.perf_counter()
passed = tm.gradcheck(small_network, [x, w])
seconds = time.perf_counter() - start
print(f"passes: {passed}; {len(calls)} forward passes for {x.numel()} + {w.numel()} input elements, {seconds:.2f} s")
assert len(calls) >= 2 * (x.numel() + w.numel())

# %% [markdown]
# ## 9. Honest limits
#
# - **It checks backward against forward, not forward against the truth.** If `forward`
#   computes the wrong function, a consistent backward passes. Forward needs its own reference:
#   chapters 2 and 3 held each op to a literal loop of its formula.
# - **It only sees the points you give it.** A bug in a branch your inputs never reach (large
#   values, exact zeros, an overflow guard) passes. Choose inputs that visit every branch.
# - **Kinks give false alarms.** At a point where the function has no derivative (ReLU and
#   $|x|$ at 0, max pooling's ties), the difference straddles the kink and disagrees with any
#   convention. Keep test inputs away from kinks, or test the kink on its own.
# - **It is slow.** Two forward passes per input element: fine for an op on a 3×4 tensor,
#   hopeless for a network's million weights. Check the parts, on small shapes.
# - **It needs float64, and determinism.** A float32 check is mostly noise (section 4), and an
#   op that draws random numbers (dropout) must draw the same ones on every forward pass.
# - **A passing check is not a correct model.** It says the gradient is the gradient of what
#   you computed; whether that was worth computing for a patient is chapter 8's question.

# %% [markdown]
# ## Exercises
#
# Exercises 4.1 and 4.2 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the name, and run
#
# ```bash
# tinymed course check 4            # in the folder holding your 04_gradcheck.py or .ipynb
# ```
#
# **Exercise 4.1 (a numerical gradient).** Write `numerical_gradient(f, x, eps=1e-6)`: `f`
# takes a float64 NumPy array of `x`'s shape and returns a number; return the array of central
# differences $\big(f(x + \varepsilon e_i) - f(x - \varepsilon e_i)\big) / 2\varepsilon$, one
# per element $i$ of `x`, in `x`'s shape. `x` may have any shape (0-d too) and need not be
# contiguous (a transposed array, say). When you return, `x` must hold exactly the values it
# held before.

# %% tags=["exercise"]
import numpy as np


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar function f at x, element by element, in x's shape."""
    # BEGIN SOLUTION
    gradient = np.empty(x.shape)
    for i in np.ndindex(x.shape):
        kept = x[i].copy()
        x[i] = kept + eps
        plus = float(f(x))
        x[i] = kept - eps
        minus = float(f(x))
        x[i] = kept
        gradient[i] = (plus - minus) / (2 * eps)
    return gradient
    # END SOLUTION


# %% [markdown]
# **Exercise 4.2 (an operation of your own).** The strength of an edge, from the two Sobel
# responses of chapter 2 ($a$ horizontal, $b$ vertical), is $r = \sqrt{a^2 + b^2}$. Write it as
# `Hypot`, a `tm.Function` of two tensors of the same shape, with its backward:
#
# $$\frac{\partial r}{\partial a} = \frac{a}{r}, \qquad \frac{\partial r}{\partial b} =
#   \frac{b}{r} .$$
#
# `backward` returns one gradient per input, as a tuple. Three traps: $a^2$ overflows for
# $a = 10^{200}$ although $r$ does not (look at `np.hypot`); at $a = b = 0$ the formula is
# $0/0$ (return a gradient of 0 there, as tinymed does at kinks); keep the inputs' dtype. The
# grader runs `tm.gradcheck` on your op.

# %% tags=["exercise"]
import tinymed as tm


class Hypot(tm.Function):
    """r = sqrt(a^2 + b^2), element-wise, for a and b of the same shape."""

    def forward(self, a, b):
        # BEGIN SOLUTION
        self.a, self.b = a, b
        self.r = self.xp.hypot(a, b)
        return self.r
        # END SOLUTION

    def backward(self, grad_output):
        # BEGIN SOLUTION
        safe_r = self.xp.where(self.r > 0, self.r, 1.0)  # a/r and b/r are 0 where r = 0
        return grad_output * self.a / safe_r, grad_output * self.b / safe_r
        # END SOLUTION


# %% [markdown]
# **Exercise 4.3 (in words).** A classmate's `tm.gradcheck` of her new layer, called as
# `tm.gradcheck(layer, [x, weight, bias])`, reports:
#
# ```
# gradcheck: gradient of input 1 (shape (4, 3)) is wrong at index (2, 0): autograd -0.8134522715,
# finite difference 0.8134522715 (atol 1e-05, rtol 0.001, eps 1e-06)
# ```
#
# (a) Which gradient is wrong, and which element was checked worst? (b) What is the most likely
# bug, and where in her backward would you look first? (c) After her fix the check passes with
# `x` drawn by `tm.randn`, but her network still trains badly on X-rays whose pixels are 0 in
# the black border. Name one reason a passing check cannot rule out, and the test you would add.
#
# **Exercise 4.4 (experiment).** `tm.gradcheck` takes `eps` (the step $h$). *Predict*, from the
# error plot of section 3, which of the steps below let the correct `SmoothL1` pass, and why the
# others fail; note that with $\beta = 0.5$ a large step can straddle the boundary $|d| = \beta$
# where $s''$ jumps. Then run the cell, and explain each failure: truncation, round-off, or the
# branch boundary?

# %%
for eps in [1e-1, 1e-3, 1e-6, 1e-9, 1e-12]:
    try:
        tm.gradcheck(lambda t: SmoothL1.apply(t, beta=0.5), [d], eps=eps)
        print(f"eps {eps:.0e}: passes")
    except GradcheckError as error:
        print(f"eps {eps:.0e}: fails, {str(error).split(': ', 1)[1][:90]}...")
