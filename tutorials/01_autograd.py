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
# # Chapter 1 · Autograd from scratch
#
# A network that reads chest X-rays has hundreds of thousands of numbers to tune. After each
# batch of images it must know, for every one of them, which way to turn it and by how much:
# the derivative of the loss with respect to that number. How can a program get all of those
# derivatives at once, for about the cost of computing the loss a single time?
#
# This chapter builds the machine that does it, **reverse-mode automatic differentiation**:
# first by hand on a one-neuron "diagnosis", then as a scalar engine that fits on one screen,
# then inside tinymed, where the same few lines work on arrays.
#
# **Learning objectives.** After this chapter you can:
#
# - Draw the computational graph of an expression and read its forward values off it.
# - Apply the chain rule node by node, and explain why the gradients of a value used twice add up.
# - Put a graph in topological order and say why backward visits it in reverse.
# - Write a scalar autograd engine (a `Value` class) and give it a new operation.
# - Find the same engine in tinymed (`Tensor.backward`, `tm.Function`) and check a new op with gradcheck.
#
# **You need** Python and NumPy; no deep learning. **Time**: about 90 minutes with the
# exercises. Run it as a script (`python tutorials/01_autograd.py`, figures go to
# `tutorials/figures/01_autograd/`) or as a notebook (`tinymed course release DIR` writes both);
# with `TINYMED_FAST=1` it runs in seconds on less data.

# %%
import inspect
import math
import time
from pathlib import Path

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed import course, plots
from tinymed.gradcheck import GradcheckError
from tinymed.metrics import roc_auc_score

print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. A diagnosis as a chain of small steps
#
# Take one number $x$ measured on an X-ray, a weight $w$ and a bias $b$. A single artificial
# neuron turns them into a probability of pneumonia, and, for an image a radiologist labelled
# "pneumonia", into a loss that is small when that probability is high:
#
# $$u = w\,x, \qquad z = u + b, \qquad p = \sigma(z) = \frac{1}{1 + e^{-z}}, \qquad L = -\log p .$$
#
# ($z$, the score before the sigmoid, is called the **logit**: a function whose name ends in
# `_with_logits` takes $z$, not $p$.) Each step is one small operation whose result feeds the
# next. Computing them in order is the **forward pass**.

# %%
x, w, b = 0.8, 1.5, -0.5
u = w * x
z = u + b
p = 1 / (1 + math.exp(-z))
L = -math.log(p)
for name, value in [("x", x), ("w", w), ("b", b), ("u = w*x", u), ("z = u+b", z), ("p = sigma(z)", p), ("L", L)]:
    print(f"{name:>14} = {value: .6f}")

# %% [markdown]
# ## 2. The computational graph
#
# Drawn as a graph, every intermediate result is a node and every arrow says "is computed
# from". The inputs (blue) have no arrows coming in; the loss has none going out. This drawing
# is all the engine will need: the forward pass walks it left to right.

# %%
graph = {"u": ["w", "x"], "z": ["u", "b"], "p": ["z"], "L": ["p"]}
forward = {"x": x, "w": w, "b": b, "u": u, "z": z, "p": p, "L": L}
formulas = {"u": "u = w*x", "z": "z = u+b", "p": "p = σ(z)", "L": "L = -log p"}
labels = {name: f"{formulas.get(name, name)}\n{value:.4f}" for name, value in forward.items()}
fig = plots.plot_graph(graph, labels, title="the one-neuron diagnosis, forward values")
course.show(fig, "graph-forward")

# %% [markdown]
# ## 3. The chain rule
#
# How does $L$ change when we nudge $w$? $L$ depends on $w$ only through $p$, $p$ only
# through $z$, $z$ only through $u$. The **chain rule** multiplies the local rates of change
# along the way:
#
# $$\frac{\partial L}{\partial w}
#   = \frac{\partial L}{\partial p}\,\frac{\partial p}{\partial z}\,
#     \frac{\partial z}{\partial u}\,\frac{\partial u}{\partial w}
#   = \left(-\frac{1}{p}\right)\,p(1-p)\,\cdot 1 \cdot x = -(1-p)\,x .$$
#
# Each factor is a **local derivative**: it looks only at one operation, its inputs and its
# output ($\sigma'(z) = \sigma(z)(1-\sigma(z)) = p(1-p)$). We check the product twice: against
# the closed form $-(1-p)x$, and against a **central difference**
# $\frac{L(w+h) - L(w-h)}{2h}$, which only needs forward passes.

# %%
local = {"dL/dp": -1 / p, "dp/dz": p * (1 - p), "dz/du": 1.0, "du/dw": x}
chain = math.prod(local.values())


def loss_of(w, x=x, b=b):
    return -math.log(1 / (1 + math.exp(-(w * x + b))))


h = 1e-6
numeric = (loss_of(w + h) - loss_of(w - h)) / (2 * h)
print("local derivatives:", {k: round(v, 6) for k, v in local.items()})
print(f"chain rule {chain:.9f}   closed form {-(1 - p) * x:.9f}   central difference {numeric:.9f}")
assert math.isclose(chain, -(1 - p) * x) and math.isclose(chain, numeric, rel_tol=1e-6)

# %% [markdown]
# ## 4. Reverse mode: one backward sweep for every input
#
# We want $\partial L/\partial w$, $\partial L/\partial b$ and $\partial L/\partial x$. Each is
# a product of local derivatives along a path from that input to $L$, and those paths share
# their end. So start at the loss with $\partial L/\partial L = 1$ and walk the graph
# **backwards**: a node hands each of its inputs its own gradient times the local derivative.
# When the walk is done, every node holds $\partial L/\partial\,\text{node}$. That is
# **reverse mode**: one sweep, about the cost of the forward pass, however many inputs there
# are. A central difference needs two forward passes *per input*: for a network with
# $10^5$ weights, $2\times10^5$ forward passes per training step.
#
# Here is that sweep over our drawing, with the local derivative of every arrow written out.

# %%
arrow_derivative = {("L", "p"): -1 / p, ("p", "z"): p * (1 - p), ("z", "u"): 1.0, ("z", "b"): 1.0}
arrow_derivative |= {("u", "w"): x, ("u", "x"): w}
grad = {name: 0.0 for name in forward}
grad["L"] = 1.0
for node in ["L", "p", "z", "u"]:  # each node after every node that uses it
    for parent in graph[node]:
        grad[parent] += arrow_derivative[(node, parent)] * grad[node]
print({name: round(g, 6) for name, g in grad.items()})
assert math.isclose(grad["w"], chain)

# %% [markdown]
# Two details of that loop carry the whole idea:
#
# - **The order.** A node may pass its gradient on only when it is complete, that is when
#   every node computed *from* it has already passed its share back. Listing the nodes so
#   that each comes after its inputs is a **topological order**; walking it backwards
#   guarantees completeness.
# - **The `+=`.** A value used in two places receives a gradient from each use, and the chain
#   rule says they add: if $f = g(a) + k(a)$ then $f'(a) = g'(a) + k'(a)$.
#
# ## 5. A scalar engine in a screen of code
#
# Now let the program record the graph itself while it computes. A `Value` holds a number,
# the `Value`s it was computed from (`parents`) and, computed in the same breath as the
# forward value, the local derivative with respect to each parent (`local_grads`). Backward
# fills in `grad`. Every operation is three facts: the value, the parents, the local
# derivatives.

# %% tags=["used-by-exercises"]
import math


class Value:
    """A number that remembers how it was computed: parents and d(self)/d(parent) for each."""

    def __init__(self, data, parents=(), local_grads=(), op=""):
        self.data = float(data)
        self.grad = 0.0  # d(output)/d(self), filled in by backward()
        self.parents, self.local_grads, self.op = parents, local_grads, op

    def __repr__(self):
        return f"Value({self.data:.4g}, grad={self.grad:.4g})"

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")


# %% [markdown]
# The rest of the arithmetic follows from those two, and three functions give the neuron what
# it needs. Their local derivatives are the ones from any calculus table:
#
# $$\frac{d}{dx}e^x = e^x, \qquad \frac{d}{dx}\log x = \frac{1}{x}, \qquad
#   \frac{d}{dx}\sigma(x) = \sigma(x)\,(1-\sigma(x)) .$$

# %% tags=["used-by-exercises"]
Value.__radd__ = Value.__add__  # 2 + v
Value.__rmul__ = Value.__mul__  # 2 * v
Value.__neg__ = lambda self: self * -1.0
Value.__sub__ = lambda self, other: self + (-other)
Value.__rsub__ = lambda self, other: (-self) + other  # 1 - v


def exp(x):
    e = math.exp(x.data)
    return Value(e, (x,), (e,), "exp")


def log(x):
    return Value(math.log(x.data), (x,), (1.0 / x.data,), "log")


def sigmoid(x):
    s = 1.0 / (1.0 + math.exp(-x.data))
    return Value(s, (x,), (s * (1.0 - s),), "σ")


# %% [markdown]
# Backward is the sweep of section 4, made general: list the graph in topological order with a
# depth-first walk (a node is appended only after all its parents), then go through the list
# backwards, each node adding `local * grad` into each parent. (Unlike tinymed and PyTorch,
# which add into `.grad` across calls, this engine starts every backward from zero.)


# %% tags=["used-by-exercises"]
def topological_order(root):
    order, visited = [], set()

    def visit(node):
        if node not in visited:
            visited.add(node)
            for parent in node.parents:
                visit(parent)
            order.append(node)  # after all of its parents

    visit(root)
    return order


def backward(self):
    order = topological_order(self)
    for node in order:
        node.grad = 0.0
    self.grad = 1.0  # d(self)/d(self)
    for node in reversed(order):  # every node after all the nodes computed from it
        for parent, local in zip(node.parents, node.local_grads):
            parent.grad += local * node.grad  # the chain rule, summed over every use


Value.backward = backward

# %% [markdown]
# That is the whole engine. The neuron again, now with `Value`s; backward must give the
# numbers we worked out by hand.

# %%
vx, vw, vb = Value(x), Value(w), Value(b)
vL = -log(sigmoid(vw * vx + vb))
vL.backward()
print("L =", vL, "\nw:", vw, "\nb:", vb, "\nx:", vx)
assert math.isclose(vL.data, L)
assert all(math.isclose(v.grad, grad[name]) for v, name in [(vw, "w"), (vb, "b"), (vx, "x")])

# %% [markdown]
# The engine built this graph by itself. We draw it from the `Value`s, in the engine's own
# topological order, with each node's value and gradient. (Where our drawing has one node for
# $L = -\log p$, the engine has three: $\log p$, the constant $-1$ and their product, because
# it wrote $-\log p$ as $\log p$ times $-1$.)

# %%
order = topological_order(vL)
names = {id(vx): "x", id(vw): "w", id(vb): "b"}
parents_of = {id(n): [id(p) for p in n.parents] for n in order}
labels = {
    id(n): f"#{k} {names.get(id(n), n.op or 'const')}\ndata {n.data:.3f}\ngrad {n.grad:.3f}"
    for k, n in enumerate(order)
}
fig = plots.plot_graph(parents_of, labels, title="the engine's graph: #k is the topological position")
course.show(fig, "graph-engine")

# %% [markdown]
# ## 6. Values used twice, and why the order matters
#
# In $f(a) = a\cdot a + a$ the value $a$ is used three times. By hand, $f'(a) = 2a + 1$, so
# $f'(3) = 7$. The engine gets there only because of the `+=`: the multiplication hands $a$
# the gradient $a$ twice (once per factor) and the addition hands it $1$.

# %%
a = Value(3.0)
f = a * a + a
f.backward()
print("f =", f.data, " df/da =", a.grad, " (2a + 1 =", 2 * a.data + 1, ")")
print("topological order:", [n.op or f"input {n.data:g}" for n in topological_order(f)])
assert a.grad == 7.0

# %% [markdown]
# ## 7. Training with the engine
#
# Gradients exist to be followed downhill. We train a real (if small) diagnostic model:
# **logistic regression** on X-ray thumbnails. Each 28×28 image is averaged over 4×4 blocks
# into 7×7 = 49 numbers, each standardised over the training set; the model is the neuron of
# section 1 with 49 inputs, $p = \sigma(\mathbf w^\top \mathbf x + b)$, and the loss is the mean
# binary cross-entropy
#
# $$L = -\frac{1}{n}\sum_{i=1}^{n} \bigl[y_i \log p_i + (1-y_i)\log(1-p_i)\bigr] .$$
#
# The chapter uses PneumoniaMNIST when it finds it, and tinymed's synthetic phantoms otherwise;
# the next line says which.

# %%
train, val = course.xray_dataset("train"), course.xray_dataset("val")


def thumbnails(dataset):
    """(N, 49): each image averaged over 4x4 blocks, in [0, 1]."""
    images = dataset.images[:, 0].astype(np.float64) / 255.0
    return images.reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(images), 49)


mean, std = thumbnails(train).mean(axis=0), thumbnails(train).std(axis=0) + 1e-8
X_train, X_val = (thumbnails(train) - mean) / std, (thumbnails(val) - mean) / std
y_train, y_val = train.labels.astype(np.float64), val.labels.astype(np.float64)
print("features", X_train.shape, "labels", y_train.shape, "positives", int(y_train.sum()))

# %% [markdown]
# What the model sees: four images of each class, and their thumbnails. Grey levels are the
# X-ray's brightness from 0 (black) to 1 (white).

# %%
picks = np.concatenate([np.flatnonzero(train.labels == c)[:4] for c in (0, 1)])
full = train.images[picks, 0] / 255.0
small = np.kron(thumbnails(train)[picks].reshape(-1, 7, 7), np.ones((4, 4)))
names = [train.info.labels[c] for c in train.labels[picks]]
fig = plots.plot_image_grid(
    np.concatenate([full, small]),
    nrow=8,
    titles=names + [""] * 8,
    title="X-rays (top) and the 7×7 thumbnails the model sees",
)
course.show(fig, "xrays")

# %% [markdown]
# Gradient descent with the scalar engine: build the loss from `Value`s, run backward, move
# every parameter a small step against its gradient, repeat. Python creates one object per
# multiplication, so we train on a few images only.

# %%
n_images, steps, lr = course.pick(64, 16), course.pick(40, 5), 0.2
ws, bs = [Value(0.0) for _ in range(49)], Value(0.0)
scalar_losses, start = [], time.perf_counter()
for _ in range(steps):
    losses = []
    for features, label in zip(X_train[:n_images], y_train[:n_images]):
        p_i = sigmoid(sum((wj * xj for wj, xj in zip(ws, features)), bs))
        losses.append(-(label * log(p_i) + (1 - label) * log(1 - p_i)))
    loss = sum(losses, Value(0.0)) * (1.0 / n_images)
    loss.backward()
    for parameter in [*ws, bs]:
        parameter.data -= lr * parameter.grad
    scalar_losses.append(loss.data)
scalar_seconds = time.perf_counter() - start
print(
    f"{steps} steps on {n_images} images: loss {scalar_losses[0]:.4f} -> {scalar_losses[-1]:.4f} in {scalar_seconds:.2f} s"
)

# %% [markdown]
# The same training with tinymed: the parameters are two tensors, the 49×`n` multiplications
# are one matrix product, and the loss is `F.binary_cross_entropy_with_logits` (the same
# formula, computed from $z$ without forming $\log(1-p)$). In float64, starting from the same
# zeros, the two runs must agree to rounding error, step for step.


# %%
def train_logistic(X, y, steps, lr):
    weight = tm.zeros(49, dtype=tm.float64, requires_grad=True)
    bias = tm.zeros(1, dtype=tm.float64, requires_grad=True)
    optimizer, losses = tm.optim.SGD([weight, bias], lr=lr), []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(tm.tensor(X) @ weight + bias, tm.tensor(y))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return weight, bias, losses


start = time.perf_counter()
*_, tensor_losses = train_logistic(X_train[:n_images], y_train[:n_images], steps, lr)
tensor_seconds = time.perf_counter() - start
print(
    f"largest difference between the two runs' losses: {np.max(np.abs(np.subtract(scalar_losses, tensor_losses))):.2e}"
)
print(
    f"scalar engine {scalar_seconds:.3f} s, tinymed {tensor_seconds:.3f} s: {scalar_seconds / tensor_seconds:.0f}x faster"
)
assert np.allclose(scalar_losses, tensor_losses, rtol=0, atol=1e-10)

# %% [markdown]
# Fast enough now to train on every training image, and to ask the question that matters:
# how well does it tell the two classes apart on images it has not seen? The area under the
# ROC curve (AUC) is 0.5 for guessing and 1 for a perfect ranking (chapter 8 explains it).

# %%
full_steps = course.pick(300, 30)
weight, bias, all_losses = train_logistic(X_train, y_train, full_steps, lr)
with tm.no_grad():
    val_scores = (tm.tensor(X_val) @ weight + bias).numpy()
val_auc = roc_auc_score(y_val, val_scores)
print(f"{len(X_train)} images, {full_steps} steps: train loss {all_losses[-1]:.4f}, validation AUC {val_auc:.3f}")

# %%
fig = plots.plot_curves(
    [{"epoch": k + 1, "scalar": s, "tinymed": t} for k, (s, t) in enumerate(zip(scalar_losses, tensor_losses))],
    [
        plots.Panel(
            f"{n_images} images in both engines; all images in black",
            "mean BCE loss",
            {"scalar engine": "scalar", "tinymed": "tinymed"},
        )
    ],
    title="two engines, one trajectory",
)
scalar_line, tinymed_line = fig.axes[0].lines[:2]
scalar_line.set(markersize=9, markerfacecolor="none")  # drawn first and equal: rings around tinymed's squares
tinymed_line.set(markersize=4)
fig.axes[0].plot(range(1, full_steps + 1), all_losses, "k-", lw=1, label=f"tinymed, all {len(X_train)} images")
fig.axes[0].set_xlabel("gradient step")
fig.axes[0].legend()
course.show(fig, "training")

# %% [markdown]
# What that number means depends on the data (the data line above says which you have). On
# the phantoms this linear model stays near an AUC of 0.7: their opacity can sit anywhere in
# the lung, and one weight per pixel cannot follow it (the convolutions of chapter 2 can). On
# PneumoniaMNIST it reaches about 0.98, which says more about how easy 28×28 PneumoniaMNIST
# is than about pneumonia; chapter 8 looks at why validation figures flatter a model.
#
# ## 8. The same engine inside tinymed
#
# tinymed's `Tensor` is our `Value` with an array in place of the float. Each operation is a
# `tm.Function` with a `forward` and, right beside it, a `backward` that receives the gradient
# of the output and returns one gradient per input; the tensor it produces remembers the
# Function as `grad_fn`, and the Function remembers its inputs as `parents`. `backward()`
# puts the graph in topological order and walks it in reverse, adding gradients exactly as our
# engine does. The neuron of section 1, in tinymed:

# %%
tx, tw, tb = (tm.tensor(v, requires_grad=True) for v in np.array([x, w, b]))  # float64, from NumPy
tL = -tm.log(tm.sigmoid(tw * tx + tb))
tL.backward()
print("L =", tL.item(), " dL/dw =", float(tw.grad), " dL/db =", float(tb.grad), " dL/dx =", float(tx.grad))
assert all(math.isclose(float(t.grad), v.grad) for t, v in [(tw, vw), (tb, vb), (tx, vx)])

# %% [markdown]
# Where it lives: `Tensor.backward` hands the work to the engine's `backward`, in the file
# below. Open it and find the loop of section 5: reverse topological order, each Function's
# backward, gradients added up.

# %%
engine_file = Path(inspect.getsourcefile(tm.autograd.backward))
package_root = Path(tm.__file__).parent.parent
lines, first = inspect.getsourcelines(tm.autograd.backward)
print(f"{engine_file.relative_to(package_root)}, line {first}: autograd.backward ({len(lines)} lines)")
print(inspect.getdoc(tm.autograd.backward))

# %% [markdown]
# tinymed recorded the graph too. We walk it from `tL.grad_fn` through each Function's
# `parents`, and draw it with the Function names tinymed uses.


# %%
def tensor_graph(root, names):
    parents, labels, stack = {}, {}, [root]
    while stack:
        t = stack.pop()
        if id(t) in labels:
            continue
        fn = t.grad_fn
        labels[id(t)] = names.get(id(t), type(fn).__name__ if fn else "const") + f"\n{t.item():.3f}"
        inputs = [p for p in fn.parents if isinstance(p, tm.Tensor)] if fn else []
        parents[id(t)] = [id(p) for p in inputs]
        stack.extend(inputs)
    return parents, labels


fig = plots.plot_graph(
    *tensor_graph(tL, {id(tx): "x", id(tw): "w", id(tb): "b"}), title="tinymed's graph of the neuron"
)
course.show(fig, "graph-tinymed")

# %% [markdown]
# A new operation in tinymed is a subclass of `tm.Function`: `forward` receives arrays and
# returns an array, keeping on `self` what backward will need; `backward` receives
# $\partial L/\partial\,\text{output}$ and returns $\partial L/\partial\,\text{input}$, the
# chain rule for one node. `self.xp` is the array module (NumPy here, CuPy on a GPU), so the
# same code runs on every backend. The logistic function, written as its own Function:


# %%
class Logistic(tm.Function):
    """sigma(x) = 1 / (1 + e^-x), element-wise; d sigma/dx = sigma (1 - sigma)."""

    def forward(self, x):
        self.out = 1.0 / (1.0 + self.xp.exp(-x))
        return self.out

    def backward(self, grad_output):
        return grad_output * self.out * (1.0 - self.out)


t = tm.linspace(-4, 4, 9, dtype=tm.float64)
print(Logistic.apply(t))
assert np.allclose(Logistic.apply(t).numpy(), F.sigmoid(t).numpy())

# %% [markdown]
# Is `backward` the derivative of `forward`? `tm.gradcheck` answers with central differences,
# element by element, in float64 (in float32 the rounding error of $L(x\pm h)$ would swamp
# the difference):
#
# $$\frac{\partial L}{\partial x_k} \approx \frac{L(x + h e_k) - L(x - h e_k)}{2h},
#   \qquad \text{error} = O(h^2) .$$
#
# It passes for `Logistic`. A backward that forgets one factor fails, and the message says
# which input, which element, and both numbers. (Chapter 4 reads such messages closely.)

# %%
tm.manual_seed(0)
t = tm.randn(3, 4, dtype=tm.float64, requires_grad=True)
print("Logistic:", tm.gradcheck(Logistic.apply, [t]))


class ForgetfulLogistic(Logistic):
    def backward(self, grad_output):
        return grad_output * self.out  # the factor (1 - sigma) is missing


try:
    tm.gradcheck(ForgetfulLogistic.apply, [t])
except GradcheckError as error:
    print("ForgetfulLogistic:", error)
else:
    raise AssertionError("gradcheck should have caught the missing factor")

# %% [markdown]
# ## 9. Honest limits
#
# - **Depth.** Our `topological_order` calls itself once per node along a path, and Python
#   stops at about a thousand nested calls. A loop of 5,000 steps builds a path that long:
#   our engine fails where tinymed, which walks its graph with a list as a stack, does not
#   (exercise 1.2 fixes ours).
# - **Speed.** One Python object per number made the scalar engine slower than tinymed by the
#   factor printed in section 7 (about 50 in our full runs, on 49 features and 64 images).
#   Tensors are not an optimisation; they are what makes training possible at all.
# - **Memory.** Reverse mode keeps every intermediate value alive until backward has used it.
#   For a CNN those are its feature maps, the main reason training needs far more memory than
#   prediction.
# - **Kinks.** At a point where a function has no derivative (ReLU, $\max(0, x)$, which
#   chapter 2 puts between layers, at 0; $|x|$ at 0) the engine
#   returns whatever the local derivative's code says; tinymed, like PyTorch, says 0.
# - **Accumulation.** Our engine restarts from zero at every backward. tinymed and PyTorch add
#   into `.grad` instead, so that gradients of several losses can be summed; that is why
#   training loops call `optimizer.zero_grad()`. Both shown below. (A backward frees the
#   values the graph saved, so walking the same graph twice needs `retain_graph=True` first.)

# %%
deep = Value(1.0)
for _ in range(5_000):
    deep = deep * 1.0
try:
    deep.backward()
except RecursionError:
    print("scalar engine: RecursionError on a chain of 5,000 multiplications")
else:
    raise AssertionError("the recursive walk was expected to run out of stack")
start_value = tm.tensor(1.0, dtype=tm.float64, requires_grad=True)
result = start_value
for _ in range(5_000):
    result = result * 1.0
result.backward(retain_graph=True)
print("tinymed, same chain: d/dx =", float(start_value.grad))
result.backward()
print("tinymed, backward a second time: .grad =", float(start_value.grad), "(added up, not replaced)")
assert float(start_value.grad) == 2.0

# %% [markdown]
# ## Exercises
#
# Exercises 1.1 to 1.3 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 1            # in the folder holding your 01_autograd.py or .ipynb
# ```
#
# It runs only the cells tagged `exercise` (and the engine cells above, tagged
# `used-by-exercises`) and prints PASS or FAIL with a hint for each. Exercises 1.4 and 1.5
# are for you and your instructor.
#
# **Exercise 1.1 (a new operation).** Give the engine $\tanh$. Return a `Value` whose data is
# $\tanh(x)$, whose parent is `x` and whose local derivative is
# $\frac{d}{dx}\tanh x = 1 - \tanh^2 x$. The grader checks the value, the gradient through
# backward (alone and inside a larger expression), and $x = 400$.

# %% tags=["exercise"]
import math


def tanh(x):
    """tanh of a Value x, as a Value whose parent is x."""
    # BEGIN SOLUTION
    t = math.tanh(x.data)
    return Value(t, (x,), (1.0 - t * t,), "tanh")
    # END SOLUTION


# %% [markdown]
# **Exercise 1.2 (topological order without recursion).** Write
# `iterative_topological_order(root)`: every node reachable from `root` through `.parents`,
# each exactly once and after all of its parents, `root` last, using a list as your own stack
# instead of recursion. It must handle nodes used twice, shared subgraphs, and a chain of
# 10,000 nodes. (Then try it in place of `topological_order` in `backward` on the deep chain
# of section 9.)


# %% tags=["exercise"]
def iterative_topological_order(root):
    """Every node reachable from root, each once and after its parents, without recursion."""
    # BEGIN SOLUTION
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
        elif node not in visited:
            visited.add(node)
            stack.append((node, True))  # comes back after everything pushed below
            stack.extend((parent, False) for parent in node.parents if parent not in visited)
    return order
    # END SOLUTION


# %% [markdown]
# **Exercise 1.3 (a tinymed Function).** Write `Softplus`, a smooth version of the ReLU
# $\max(0, x)$, $\operatorname{softplus}(x) = \log(1 + e^{x})$, as a `tm.Function` with its `backward`
# ($\frac{d}{dx}\operatorname{softplus}(x) = \sigma(x)$). Two traps: $e^{800}$ overflows (look
# at `np.logaddexp`), and the derivative must stay finite at $x = \pm 800$. Keep the input's
# dtype and shape; the grader also runs `tm.gradcheck` on your op.

# %% tags=["exercise"]
import numpy as np

import tinymed as tm


class Softplus(tm.Function):
    """softplus(x) = log(1 + e^x), element-wise."""

    def forward(self, x):
        # BEGIN SOLUTION
        self.out = self.xp.logaddexp(0.0, x)  # log(e^0 + e^x), safe for large x
        return self.out
        # END SOLUTION

    def backward(self, grad_output):
        # BEGIN SOLUTION
        return grad_output * -self.xp.expm1(-self.out)  # sigma(x) = 1 - e^(-softplus(x))
        # END SOLUTION


# %% [markdown]
# **Exercise 1.4 (in words).** Suppose `backward` visited the nodes in *forward* topological
# order instead of reverse. Take $f(a) = (a\cdot a)\cdot a$ at $a = 2$, write down what each
# node's `grad` would be after such a sweep, and say in two or three sentences which rule of
# section 4 it breaks and why the answer is wrong.
#
# **Exercise 1.5 (experiment).** Reverse mode costs about one forward pass whatever the number
# of inputs $n$; central differences cost $2n$ forward passes. *Predict* how the two times
# below grow with $n$ (sketch the lines on the log-log plot before running), then run the cell,
# extend `sizes` to 900, and explain any gap between your prediction and the plot. (Past about
# 950 inputs the recursive `topological_order` runs out of stack: your answer to 1.2 lifts that.)


# %%
def cost(n):
    """Seconds to get all n gradients of f = sum(x_i^2): by backward, and by central differences."""
    xs = [Value(float(k)) for k in range(n)]
    start = time.perf_counter()
    sum((v * v for v in xs), Value(0.0)).backward()
    reverse = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(n):
        shifted = [v.data + (1e-6 if j == k else 0.0) for j, v in enumerate(xs)]
        sum(s * s for s in shifted)  # f(x + h e_k); f(x - h e_k) would cost the same again
    return reverse, 2 * (time.perf_counter() - start)


sizes = course.pick([10, 30, 100, 300], [10, 30])
# The fastest of three runs: a single run of a few microseconds can include a one-off cost
# (the first call, a garbage collection) larger than the work being timed.
times = np.array([np.min([cost(n) for _ in range(3)], axis=0) for n in sizes])
fig = plots.plot_curves(
    [{"epoch": n, "reverse": r, "central": c} for n, (r, c) in zip(sizes, times)],
    [plots.Panel("cost of all n gradients", "seconds", {"backward": "reverse", "central differences": "central"})],
)
fig.axes[0].set(xscale="log", yscale="log", xlabel="number of inputs n")
course.show(fig, "experiment-cost")
