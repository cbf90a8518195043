"""A whole model on every backend: LeNet forward + backward + one SGD step must give the
NumPy backend's parameters, and two runs from the same seed must agree bit for bit.

In the CUDA simulator every GPU thread is a Python thread, so there the images are 12x12
(LeNet's smallest input), the batch is 1, and the whole-model reproducibility run is left to
real GPUs (the simulator's determinism is checked primitive by primitive in
test_backends.py); on a GPU both tests run at 28x28 with a batch of 2."""

import numpy as np
import pytest

import tinymed as tm
import tinymed.functional as F
from tinymed import optim
from tinymed.models import LeNet

GPU_BACKENDS = [name for name in tm.backends.available() if name != "numpy"]


def simulated(backend: str) -> bool:
    return backend == "numba" and tm.backends.get("numba").xp is np


def one_step(backend: str, simulated: bool) -> dict[str, np.ndarray]:
    tm.manual_seed(0)
    batch, size = (1, 12) if simulated else (2, 28)
    model = LeNet(in_channels=1, num_classes=3, image_size=size).to(backend)
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
def test_lenet_step_matches_numpy(backend):
    expected = one_step("numpy", simulated(backend))
    got = one_step(backend, simulated(backend))
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.skipif(not GPU_BACKENDS, reason="no backend besides NumPy can run here")
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_lenet_step_is_bit_reproducible(backend):
    if simulated(backend):
        pytest.skip("two LeNet steps in the CUDA simulator take minutes; primitives are checked in test_backends.py")
    first, second = one_step(backend, False), one_step(backend, False)
    for name in first:
        assert np.array_equal(first[name], second[name]), name
