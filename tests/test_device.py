"""tinymed.device: every spelling, equality, errors, factory kwargs, Module.to and tinymed.cuda."""

import copy
import pickle

import numpy as np
import pytest

import tinymed as tm
from tinymed import nn
from tinymed.device import KERNELS

SPELLINGS = [
    ("cpu", "cpu", None, "numpy", "cpu"),
    ("numpy", "cpu", None, "numpy", "cpu"),
    ("cuda", "cuda", None, "cupy", "cuda"),
    ("cupy", "cuda", None, "cupy", "cuda"),
    ("cuda:0", "cuda", 0, "cupy", "cuda:0"),
    ("cupy:1", "cuda", 1, "cupy", "cuda:1"),
    ("numba", "cuda", None, "numba", "numba"),
    ("numba:0", "cuda", 0, "numba", "numba:0"),
]


@pytest.mark.parametrize("spec, type_, index, kernels, canonical", SPELLINGS)
def test_every_spelling_canonicalises(spec, type_, index, kernels, canonical):
    d = tm.device(spec)
    assert (d.type, d.index, d.kernels, str(d)) == (type_, index, kernels, canonical)
    assert d == tm.device(canonical) == canonical and tm.device(d) == d
    assert hash(d) == hash(tm.device(canonical)) == hash(canonical)
    assert repr(d).startswith("device(type=")
    assert pickle.loads(pickle.dumps(d)) == d and copy.deepcopy(d) == d


def test_equality_tells_places_and_kernel_families_apart():
    assert tm.device("cuda") != tm.device("cuda:0") and tm.device("cuda") != tm.device("numba")
    assert tm.device("cpu") != "numpy" and tm.device("cpu") != 1
    assert tm.device("cuda", 0) == "cuda:0"
    assert len({tm.device("cpu"), tm.device("numpy"), tm.device("cuda")}) == 2


def test_a_device_is_immutable():
    d = tm.device("cpu")
    with pytest.raises(AttributeError, match="immutable"):
        d.type = "cuda"


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("tpu", ValueError, "device: unknown backend 'tpu'; expected 'cpu', 'cuda', 'cuda:N' or a kernel family"),
        ("cuda:x", ValueError, "device: the index in 'cuda:x' must be a non-negative int"),
        ("cpu:1", ValueError, "device: the cpu has no index"),
        (3, TypeError, "device: expected a string"),
    ],
)
def test_bad_spellings_say_what_is_expected(spec, error, message):
    with pytest.raises(error, match=message):
        tm.device(spec)


def test_the_backend_is_reached_through_the_device():
    backend = tm.device("cpu").backend
    assert backend.name == "numpy" and backend.xp is np
    with pytest.raises(tm.backends.BackendUnavailableError, match="current GPU only"):
        _ = tm.device("cuda:1").backend


@pytest.mark.skipif(tm.cuda.is_available(), reason="checks the message on a machine without a usable GPU")
def test_an_unavailable_gpu_is_one_line_saying_what_to_install():
    with pytest.raises(tm.backends.BackendUnavailableError) as raised:
        tm.ones(2, device="cuda")
    message = str(raised.value)
    assert "\n" not in message and "tinymed[cuda]" in message and "'cupy'" in message
    with pytest.raises(tm.backends.BackendUnavailableError, match=r"tinymed\[cuda\]"):
        nn.Linear(2, 3).to("cuda")
    with pytest.raises(tm.backends.BackendUnavailableError, match=r"tinymed\[cuda\]"):
        nn.Linear(2, 3).cuda()
    assert tm.cuda.device_count() == 0


def test_cuda_module_agrees_with_the_device():
    assert isinstance(tm.cuda.is_available(), bool) and tm.cuda.is_available() == (tm.cuda.device_count() > 0)
    assert tm.cuda.is_available() == ("cupy" in tm.backends.available())


def test_tensor_device_is_a_device_and_backend_its_kernel_name():
    x = tm.ones(2)
    assert isinstance(x.device, tm.device) and x.device == "cpu" and x.backend == "numpy"
    assert tm.tensor([1.0], device=tm.device("numpy")).device == tm.device("cpu")


CREATORS = {
    "tensor": lambda **kw: tm.tensor([1.0, 2.0], **kw),
    "zeros": lambda **kw: tm.zeros(2, 3, **kw),
    "ones": lambda **kw: tm.ones(2, **kw),
    "full": lambda **kw: tm.full((2,), 1.5, **kw),
    "arange": lambda **kw: tm.arange(0, 3, **kw),
    "linspace": lambda **kw: tm.linspace(0, 1, 3, **kw),
    "eye": lambda **kw: tm.eye(2, **kw),
    "randn": lambda **kw: tm.randn(2, **kw),
    "rand": lambda **kw: tm.rand(2, **kw),
    "randint": lambda **kw: tm.randint(0, 5, (3,), **kw),
    "zeros_like": lambda **kw: tm.zeros_like(tm.ones(2), **kw),
    "ones_like": lambda **kw: tm.ones_like(tm.ones(2), **kw),
    "full_like": lambda **kw: tm.full_like(tm.ones(2), 3.0, **kw),
    "randn_like": lambda **kw: tm.randn_like(tm.ones(2), **kw),
    "rand_like": lambda **kw: tm.rand_like(tm.ones(2), **kw),
}


@pytest.mark.parametrize("name", CREATORS)
def test_every_creation_function_takes_device_and_dtype(name):
    made = CREATORS[name](device=tm.device("cpu"), dtype=tm.float64)
    assert made.device == "cpu" and made.dtype == tm.float64
    assert CREATORS[name](device="numpy").device == "cpu"


def test_randperm_takes_device_and_backend_still_works():
    assert tm.randperm(4, device="cpu").device == "cpu" and tm.zeros(2, backend="numpy").device == "cpu"
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        tm.ones(2, device="tpu")


LAYERS = {
    "Linear": lambda **kw: nn.Linear(2, 3, **kw),
    "Conv2d": lambda **kw: nn.Conv2d(1, 2, 3, **kw),
    "ConvTranspose2d": lambda **kw: nn.ConvTranspose2d(1, 2, 3, **kw),
    "BatchNorm1d": lambda **kw: nn.BatchNorm1d(3, **kw),
    "BatchNorm2d": lambda **kw: nn.BatchNorm2d(3, **kw),
    "LayerNorm": lambda **kw: nn.LayerNorm(4, **kw),
    "MultiheadAttention": lambda **kw: nn.MultiheadAttention(4, 2, **kw),
}


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_takes_pytorch_factory_kwargs(name):
    layer = LAYERS[name](device="cpu", dtype=tm.float64)
    tensors = list(layer.parameters()) + list(layer.buffers())
    assert tensors and all(t.device == "cpu" for t in tensors)
    assert all(t.dtype == tm.float64 for t in layer.parameters())


def test_module_to_accepts_every_pytorch_form():
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    weight = net[0].weight
    assert net.to("cpu") is net and weight.device == "cpu"
    assert net.to(tm.float64) is net and weight.dtype == tm.float64
    net.to("cpu", tm.float32)
    assert weight.dtype == tm.float32 and net[1].num_batches_tracked.dtype == tm.int64
    net.to(device=tm.device("numpy"), dtype=tm.float64)
    assert weight.dtype == tm.float64 and net[0].weight is weight
    assert net.cpu() is net and weight.device == "cpu"
    with pytest.raises(TypeError, match="neither a dtype nor a backend"):
        net.to("tpu")


def test_tensor_to_accepts_device_and_dtype_keywords():
    x = tm.ones(2)
    assert x.to(device="cpu") is x and x.to(device="cpu", dtype=tm.float64).dtype == tm.float64
    assert x.to(tm.device("cpu")) is x


def test_the_kernel_families_are_the_backend_modules():
    assert KERNELS == tm.backends.NAMES and all(tm.device(name).kernels == name for name in KERNELS)
