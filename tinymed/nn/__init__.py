"""tinymed.nn: layers, containers, losses and initialisation (mirrors ``torch.nn``).

``tinymed.nn.functional`` is the same module object as :mod:`tinymed.functional`, so both
``import tinymed.nn.functional as F`` and ``tinymed.functional`` reach the same ops."""

import sys

from tinymed import functional
from tinymed.errors import not_in_tinymed
from tinymed.nn import init, parallel, utils
from tinymed.nn.activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from tinymed.nn.attention import MultiHeadAttention, MultiheadAttention
from tinymed.nn.container import ModuleDict, ModuleList, Sequential
from tinymed.nn.conv import Conv2d, ConvTranspose2d
from tinymed.nn.dropout import Dropout
from tinymed.nn.embedding import Embedding
from tinymed.nn.flatten import Flatten
from tinymed.nn.linear import Identity, Linear
from tinymed.nn.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, DiceLoss, L1Loss, MSELoss, NLLLoss
from tinymed.nn.module import Module
from tinymed.nn.normalization import (
    BatchNorm1d,
    BatchNorm2d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
)
from tinymed.nn.parameter import Parameter
from tinymed.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from tinymed.nn.upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d

sys.modules[__name__ + ".functional"] = functional

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "DiceLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "GELU",
    "GroupNorm",
    "Identity",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiHeadAttention",
    "MultiheadAttention",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Upsample",
    "UpsamplingBilinear2d",
    "UpsamplingNearest2d",
    "functional",
    "init",
    "parallel",
    "utils",
]

__getattr__ = not_in_tinymed("tinymed.nn")
