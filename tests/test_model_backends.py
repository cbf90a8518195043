"""A whole model on every backend: LeNet forward + backward + one SGD step must give the
NumPy backend's parameters, and two runs from the same seed must agree bit for bit.

In the CUDA simulator every GPU thread is a Python thread, so there the model is a small CNN
of LeNet's layer types (:func:`small_cnn`) on one 12x12 image; on a GPU both tests run LeNet
at 28x28 with a batch of 2."""

import numpy as np
import pytest

import tinymed as tm
import tinymed.functional as F
from tinymed import nn, optim
from tinymed.models import LeNet

GPU_BACKENDS = [name for name in tm.backends.available() if name != "numpy"]


def simulated(backend: str) -> bool:
    return backend == "numba" and tm.backends.get("numba").xp is np


def small_cnn() -> nn.Module:
    """LeNet's layer types (padded and unpadded convolutions, ReLU, max-pooling, linear
    layers) with a few channels. The simulator runs every GPU thread as a Python thread and
    LeNet's 2,550 convolution weights take one block each in the weight gradient: one LeNet
    step took 160 s there, this one seconds."""
    return nn.Sequential(
        nn.Conv2d(1, 2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 3, kernel_size=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )


def one_step(backend: str, simulated: bool) -> dict[str, np.ndarray]:
    """One SGD step of LeNet (a small CNN of its layer types in the simulator) on ``backend``;
    returns the updated parameters."""
    tm.manual_seed(0)
    batch, size = (1, 12) if simulated else (2, 28)
    model = (small_cnn() if simulated else LeNet(in_channels=1, num_classes=3, image_size=size)).to(backend)
    images = tm.randn(batch, 1, size, size).to(backend)
    labels = tm.tensor([2, 0][:batch]).to(backend)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {name: p.numpy() for name, p in model.named_parameters()}


@pytest.mark.skipif(not GPU_BACKENDS, reason="no backend besides NumPy can run here")
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_a_training_step_matches_numpy(backend):
    expected = one_step("numpy", simulated(backend))
    got = one_step(backend, simulated(backend))
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.skipif(not GPU_BACKENDS, reason="no backend besides NumPy can run here")
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_a_training_step_is_bit_reproducible(backend):
    first, second = one_step(backend, simulated(backend)), one_step(backend, simulated(backend))
    for name in first:
        assert np.array_equal(first[name], second[name]), name
