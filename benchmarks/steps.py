"""A whole training step of each model tinymed trains, in tinymed and in PyTorch, same weights.

The PyTorch model is not a copy written by hand: :func:`torch_twin` runs the model's own source
file (tinymed/models/lenet.py, medcnn.py, dcgan.py) with its imports pointed at PyTorch.
tinymed uses PyTorch's names, so ``import tinymed.functional as F`` becoming
``torch.nn.functional`` and ``from tinymed import nn`` becoming ``torch.nn`` give the same
architecture in PyTorch; the tinymed model's ``state_dict`` is then loaded into it. The step
itself (:func:`classifier_step`, :func:`gan_step`) is one function run on both libraries,
with the optimisers tinymed's trainers use: AdamW for the classifiers, Adam(0.5, 0.999) for
the DCGAN, a discriminator step then a generator step on the same generated batch.

Before timing, both models (in eval mode, so dropout and batch statistics do not differ)
must give the same outputs for the same batch.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

import tinymed
import tinymed.functional as tinymed_functional
from benchmarks.implementations import relative_error
from tinymed import optim as tinymed_optim
from tinymed.models import build_model

MODELS = ("lenet", "medcnn", "dcgan")
LATENT_DIM = 100  # the DCGAN's default latent size


def torch_twin(model_class: type, torch: ModuleType) -> type:
    """``model_class`` rebuilt from its own source file with every ``tinymed`` import
    answered by PyTorch's module of the same role."""
    counterparts: Mapping[str, ModuleType] = {
        "tinymed": torch,
        "tinymed.functional": torch.nn.functional,
        "tinymed.nn": torch.nn,
        "tinymed.nn.functional": torch.nn.functional,
        "tinymed.tensor": torch,
    }
    # ``import tinymed.functional as F`` imports the package, then reads its attribute
    # ``functional``: the package stand-in must answer that with torch.nn.functional.
    package = ModuleType("tinymed (PyTorch stand-in)")
    package.__getattr__ = lambda name: getattr(torch, name)
    package.functional, package.nn, package.tensor = torch.nn.functional, torch.nn, torch

    def redirected_import(name: str, globals=None, locals=None, fromlist=(), level=0) -> ModuleType:
        if name.split(".")[0] != "tinymed":
            return builtins.__import__(name, globals, locals, fromlist, level)
        if name not in counterparts:
            raise ImportError(
                f"torch_twin: {model_class.__name__}'s source imports {name}, which has no PyTorch stand-in"
            )
        return counterparts[name] if fromlist else package

    path = inspect.getsourcefile(model_class)
    module = ModuleType(f"torch_twin_{model_class.__module__}")
    module.__dict__["__builtins__"] = {**builtins.__dict__, "__import__": redirected_import}
    with open(path) as source:
        exec(compile(source.read(), path, "exec"), module.__dict__)
    return getattr(module, model_class.__name__)


def classifier_step(F: ModuleType, model: Any, optimizer: Any, images: Any, labels: Any) -> None:
    """Forward, cross-entropy, backward, optimiser step."""
    optimizer.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def gan_step(F: ModuleType, gan: Any, optimizers: tuple[Any, Any], real: Any, z: Any, ones: Any, zeros: Any) -> None:
    """The DCGAN's step: D learns ``BCE(D(x), 1) + BCE(D(G(z)), 0)`` (G's output detached),
    then G learns ``BCE(D(G(z)), 1)``, both on the same ``G(z)``."""
    optimizer_g, optimizer_d = optimizers
    bce = F.binary_cross_entropy_with_logits
    fake = gan.generator(z)
    optimizer_d.zero_grad()
    (bce(gan.discriminator(real), ones) + bce(gan.discriminator(fake.detach()), zeros)).backward()
    optimizer_d.step()
    optimizer_g.zero_grad()
    bce(gan.discriminator(fake), ones).backward()
    optimizer_g.step()


def batch_arrays(name: str, batch: int) -> dict[str, np.ndarray]:
    """A seeded batch for model ``name``: images and labels, or for the DCGAN real images,
    latent vectors and the two BCE targets."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    if name == "dcgan":
        return {
            "real": np.tanh(images),
            "z": rng.standard_normal((batch, LATENT_DIM), dtype=np.float32),
            "ones": np.ones(batch, np.float32),
            "zeros": np.zeros(batch, np.float32),
        }
    return {"images": images, "labels": rng.integers(0, 2, batch)}


def make_step(name: str, F: ModuleType, optim: ModuleType, model: Any, data: Mapping[str, Any]) -> Callable[[], None]:
    """One training step of ``model`` on ``data`` with library ``F``/``optim`` (tinymed's or
    PyTorch's), the optimiser of tinymed's trainer for that model."""
    if name == "dcgan":
        optimizers = tuple(
            optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999)) for net in (model.generator, model.discriminator)
        )
        return lambda: gan_step(F, model, optimizers, data["real"], data["z"], data["ones"], data["zeros"])
    optimizer = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    return lambda: classifier_step(F, model, optimizer, data["images"], data["labels"])


def tinymed_step(name: str, batch: int, backend: str = "numpy") -> Callable[[], None]:
    """tinymed's training step of model ``name`` (seeded weights and batch) on ``backend``."""
    tinymed.manual_seed(0)
    model = build_model(name).to(backend)
    data = {key: tinymed.from_numpy(a).to(backend) for key, a in batch_arrays(name, batch).items()}
    return make_step(name, tinymed_functional, tinymed_optim, model, data)


def _outputs(name: str, model: Any, data: Mapping[str, Any]) -> Any:
    """What the check compares: the logits, or D(G(z)) for the DCGAN."""
    if name == "dcgan":
        return model.discriminator(model.generator(data["z"]))
    return model(data["images"])


@dataclass
class StepPair:
    """The same training step in tinymed and PyTorch, and how far their outputs were apart
    before training (eval mode)."""

    model: str
    batch: int
    tinymed: Callable[[], None]
    torch: Callable[[], None]
    error: float


def step_pair(name: str, batch: int, backend: str, torch: ModuleType, device: str) -> StepPair:
    """Model ``name`` built by tinymed on ``backend`` and by :func:`torch_twin` on ``device``,
    with tinymed's weights copied over, each with its training step on the same batch."""
    tinymed.manual_seed(0)
    model = build_model(name)
    twin = torch_twin(type(model), torch)(**model.config)
    twin.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in model.state_dict().items()})
    model.to(backend)
    twin.to(device)
    arrays = batch_arrays(name, batch)
    ours = {key: tinymed.from_numpy(a).to(backend) for key, a in arrays.items()}
    theirs = {key: torch.from_numpy(a).to(device) for key, a in arrays.items()}

    model.eval()
    twin.eval()
    with tinymed.no_grad(), torch.no_grad():
        error = relative_error(
            [tinymed_to_numpy(_outputs(name, model, ours))], [_outputs(name, twin, theirs).cpu().numpy()]
        )
    model.train()
    twin.train()
    return StepPair(
        name,
        batch,
        make_step(name, tinymed_functional, tinymed_optim, model, ours),
        make_step(name, torch.nn.functional, torch.optim, twin, theirs),
        error,
    )


def tinymed_to_numpy(tensor: Any) -> np.ndarray:
    """A tinymed tensor's values as a NumPy array, from any backend."""
    return tensor.detach().cpu().numpy()
