"""Tutorial 1: reverse-mode autograd, one step at a time.

Run it:  python tutorials/01_autograd.py

We build y = w * x + b by hand, look at the graph tinymed records, run backward, and check
every gradient twice: against the derivative worked out on paper, and against finite
differences with tinymed.gradcheck.
"""

import numpy as np

import tinymed as tm
from tinymed import gradcheck

# --- 1. A forward pass records a graph ------------------------------------------------
x = tm.tensor(3.0)  # data: no gradient wanted
w = tm.tensor(2.0, requires_grad=True)  # parameters: gradients wanted
b = tm.tensor(0.5, requires_grad=True)
y = w * x + b  # Mul, then Add

# Every result remembers the Function that made it and that Function's inputs.
print("y =", y.item(), "made by", type(y._ctx).__name__, "from", [type(p).__name__ for p in y._ctx.parents])

# --- 2. backward walks the graph in reverse ------------------------------------------
# dy/dw = x = 3 and dy/db = 1: Add passes its gradient through, Mul multiplies it by the
# other factor.
y.backward()
print("dy/dw =", w.grad, " dy/db =", b.grad)
assert w.grad == 3.0 and b.grad == 1.0

# --- 3. Gradients add up when a value is used twice ----------------------------------
# z = w * w: both inputs of Mul are w, so w receives w.grad from each: dz/dw = 2w = 4.
w.grad = None
(w * w).backward()
print("d(w*w)/dw =", w.grad)
assert w.grad == 4.0

# --- 4. Broadcasting: the gradient is summed back to the input's shape -----------------
# A bias of shape (3,) added to a (2, 3) batch is used twice per entry, so its gradient
# is the column sum of the incoming gradient.
batch = tm.tensor(np.arange(6.0).reshape(2, 3))
bias = tm.zeros(3, requires_grad=True)
(batch + bias).sum().backward()
print("bias.grad =", bias.grad)
assert np.array_equal(bias.grad, [2.0, 2.0, 2.0])

# --- 5. Finite differences agree ------------------------------------------------------
# gradcheck nudges every input element by +-eps (in float64) and compares the change of
# the output with what backward says.
tm.manual_seed(0)
a = tm.randn(3, 4, dtype=tm.float64, requires_grad=True)
v = tm.randn(4, dtype=tm.float64, requires_grad=True)
assert gradcheck(lambda a, v: ((a @ v).tanh() * a.exp().sum(1)).sum(), [a, v])
print("gradcheck: autograd matches finite differences")
