"""The models tinymed trains, listed by name so a checkpoint can rebuild them.

A checkpoint stores ``{"name": "medcnn", "config": {...}}``; :func:`build_model` turns that
back into the network (``MODELS[name](**config)``). Each model keeps the keyword arguments
it was built with in ``model.config``, and :func:`model_spec` reads them back out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tinymed import nn
from tinymed.errors import ModelError
from tinymed.models.dcgan import DCGAN
from tinymed.models.lenet import LeNet
from tinymed.models.medcnn import MedCNN
from tinymed.models.unet import UNet

__all__ = ["MODELS", "CLASSIFIERS", "ModelError", "build_model", "model_spec", "LeNet", "MedCNN", "DCGAN", "UNet"]

# The one list of trainable models: registry name -> constructor.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet,
    "medcnn": MedCNN,
    "dcgan": DCGAN,
    "unet": UNet,
}

# The models that classify images (``tinymed train cnn --model``), the default first.
CLASSIFIERS: tuple[str, ...] = ("medcnn", "lenet")


def build_model(name: str, config: Mapping[str, Any] | None = None) -> nn.Module:
    """The model registered as ``name``, built with the keyword arguments in ``config``."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; the models are: {', '.join(MODELS)}")
    try:
        return MODELS[name](**dict(config or {}))
    except (TypeError, ValueError) as e:
        raise ModelError(f"cannot build model {name!r} from config {dict(config or {})}: {e}") from e


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "config": ...}``: what :func:`build_model` needs to rebuild ``model``."""
    for name, constructor in MODELS.items():
        if type(model) is constructor:
            return {"name": name, "config": dict(model.config)}
    raise ModelError(f"model_spec: {type(model).__name__} is not a registered model ({', '.join(MODELS)})")
