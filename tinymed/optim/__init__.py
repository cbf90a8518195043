"""tinymed.optim: optimisers and learning-rate schedules (mirrors ``torch.optim``).

The schedulers live in :mod:`tinymed.optim.lr_scheduler`, as in PyTorch, and are also
importable from here; weight averaging (EMA, SWA) in :mod:`tinymed.optim.swa_utils`."""

from tinymed.errors import not_in_tinymed
from tinymed.optim import lr_scheduler, swa_utils
from tinymed.optim.adam import Adam, AdamW
from tinymed.optim.lr_scheduler import (
    CosineAnnealingLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    StepLR,
)
from tinymed.optim.optimizer import Optimizer
from tinymed.optim.rmsprop import RMSprop
from tinymed.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Optimizer",
    "LRScheduler",
    "StepLR",
    "MultiStepLR",
    "CosineAnnealingLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "lr_scheduler",
    "swa_utils",
]

__getattr__ = not_in_tinymed("tinymed.optim")
