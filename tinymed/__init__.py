"""tinymed: a from-scratch deep-learning framework for teaching medical image analysis.

``import tinymed as tm`` gives PyTorch's everyday vocabulary (``tm.tensor``, ``tm.zeros``,
``tm.no_grad``, ``tm.manual_seed``, ...); ``tinymed.functional`` mirrors
``torch.nn.functional``, ``tinymed.nn`` mirrors ``torch.nn`` and ``tinymed.optim`` mirrors
``torch.optim``; ``tm.device`` and ``tm.cuda`` say where tensors live and which kernels run
there. See docs/architecture.md for the layers underneath.
"""

# The kernel modules, for code that inspects them (tm.backends.available()); the layers reach
# them only through a device.
from tinymed import autograd, backends, cuda
from tinymed.autograd import (
    Function,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
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
from tinymed.device import device
from tinymed.dtypes import (
    bool_,
    double,
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int32,
    int64,
    long,
    set_default_dtype,
    uint8,
)
from tinymed.errors import not_in_tinymed
from tinymed.ops.matmul import bmm, matmul
from tinymed.ops.reduction import norm
from tinymed.ops.shape import cat, stack, tril, triu, where
from tinymed.random import (
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    seed,
    set_rng_state,
)
from tinymed.tensor import Tensor, from_numpy, is_tensor, tensor
from tinymed.threads import get_num_threads, set_num_threads
from tinymed.version import VERSION as __version__

# PyTorch spells these as attributes of the top-level module.
float = float32
bool = bool_
# PyTorch's function forms of Tensor methods: torch.exp(x) is x.exp(), torch.max(x, 1) is x.max(1).
exp, log, sqrt, abs, clamp, clip = Tensor.exp, Tensor.log, Tensor.sqrt, Tensor.abs, Tensor.clamp, Tensor.clip
sum, mean, var, max, min, argmax = Tensor.sum, Tensor.mean, Tensor.var, Tensor.max, Tensor.min, Tensor.argmax
argmin, amax, amin, clone = Tensor.argmin, Tensor.amax, Tensor.amin, Tensor.clone
maximum, minimum = Tensor.maximum, Tensor.minimum
add, sub, mul, div = Tensor.add, Tensor.sub, Tensor.mul, Tensor.div
reshape, flatten, transpose, permute = Tensor.reshape, Tensor.flatten, Tensor.transpose, Tensor.permute
unsqueeze, squeeze, masked_fill = Tensor.unsqueeze, Tensor.squeeze, Tensor.masked_fill
# The layers above the engine, reachable as in PyTorch: tm.nn.Linear, tm.optim.SGD,
# tm.sigmoid(x), tm.softmax(x, 1).
from tinymed import functional, nn, optim, utils
from tinymed.functional import log_softmax, relu, sigmoid, softmax, tanh
from tinymed.gradcheck import GradcheckError, gradcheck
from tinymed.serialization import load, save

__getattr__ = not_in_tinymed("tinymed")
