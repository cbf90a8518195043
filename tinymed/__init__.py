"""tinymed: a from-scratch deep-learning framework for teaching medical image analysis.

``import tinymed as tm`` gives PyTorch's everyday vocabulary (``tm.tensor``, ``tm.zeros``,
``tm.no_grad``, ``tm.manual_seed``, ...); ``tinymed.functional`` mirrors
``torch.nn.functional``, ``tinymed.nn`` mirrors ``torch.nn`` and ``tinymed.optim`` mirrors
``torch.optim``. See DESIGN.md for the layers underneath.
"""

__version__ = "0.1.0"

from tinymed import backends
from tinymed.creation import (
    arange,
    eye,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    zeros,
    zeros_like,
)
from tinymed.random import get_rng_state, manual_seed, set_rng_state
from tinymed.tensor import (
    Function,
    Tensor,
    bmm,
    bool_,
    cat,
    double,
    enable_grad,
    float16,
    float32,
    float64,
    from_numpy,
    get_default_dtype,
    half,
    int32,
    int64,
    is_grad_enabled,
    is_tensor,
    long,
    matmul,
    no_grad,
    set_default_dtype,
    set_grad_enabled,
    stack,
    tensor,
    uint8,
    where,
)

# PyTorch spells these as attributes of the top-level module.
float = float32
bool = bool_
# PyTorch's function forms of Tensor methods: torch.exp(x) is x.exp(), torch.max(x, 1) is x.max(1).
exp, log, sqrt, abs, clamp, clip = Tensor.exp, Tensor.log, Tensor.sqrt, Tensor.abs, Tensor.clamp, Tensor.clip
sum, mean, var, max, min, argmax = Tensor.sum, Tensor.mean, Tensor.var, Tensor.max, Tensor.min, Tensor.argmax
reshape, flatten, transpose, permute = Tensor.reshape, Tensor.flatten, Tensor.transpose, Tensor.permute
unsqueeze, squeeze, masked_fill = Tensor.unsqueeze, Tensor.squeeze, Tensor.masked_fill
# The layers above the engine, reachable as in PyTorch: tm.nn.Linear, tm.optim.SGD,
# tm.sigmoid(x), tm.softmax(x, 1).
from tinymed import functional, nn, optim
from tinymed.functional import log_softmax, relu, sigmoid, softmax, tanh
from tinymed.gradcheck import GradcheckError, gradcheck
