"""The ops users call, ``tinymed.functional`` (alias ``tinymed.nn.functional``).

Names, arguments, defaults and weight layouts are those of ``torch.nn.functional``, so code
written for PyTorch ports by changing its imports. Each op lives in one module of
:mod:`tinymed.ops`, its autograd Function (forward beside backward) next to the function
re-exported here; every op checks its arguments first and raises a ``TypeError``/``ValueError``
that names the op, the argument and the shapes involved.

The four formula families of the course call the device's backend primitives (see
:class:`tinymed.backends.Backend`):

* convolution  ``y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x_pad[n,c,i*sh+p*dh,j*sw+q*dw]``
  (:mod:`tinymed.ops.conv`)
* max pooling  ``y[n,c,i,j] = max_{p,q} x_pad[n,c,i*sh+p*dh,j*sw+q*dw]`` (:mod:`tinymed.ops.pool`)
* affine       ``y = x W^T + b`` (:mod:`tinymed.ops.linear`)
* attention    ``softmax(Q K^T / sqrt(d_k)) V`` (:mod:`tinymed.ops.attention`)

Everything else (activations, normalisation, losses, padding, resizing) is element-wise maths,
reductions and matrix products on the backend's array module.
"""

from tinymed.errors import not_in_tinymed
from tinymed.ops.activation import gelu, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from tinymed.ops.attention import scaled_dot_product_attention
from tinymed.ops.conv import conv2d, conv_transpose2d
from tinymed.ops.dropout import dropout
from tinymed.ops.embedding import embedding
from tinymed.ops.interpolate import interpolate
from tinymed.ops.linear import linear
from tinymed.ops.loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    dice_loss,
    l1_loss,
    mse_loss,
    nll_loss,
)
from tinymed.ops.norm import batch_norm, group_norm, instance_norm, layer_norm
from tinymed.ops.one_hot import one_hot
from tinymed.ops.pad import pad
from tinymed.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "conv_transpose2d",
    "cross_entropy",
    "dice_loss",
    "dropout",
    "embedding",
    "gelu",
    "group_norm",
    "instance_norm",
    "interpolate",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "one_hot",
    "pad",
    "relu",
    "scaled_dot_product_attention",
    "sigmoid",
    "softmax",
    "tanh",
]

__getattr__ = not_in_tinymed("tinymed.functional")
