"""LeNet and MedCNN: shapes, the registry that rebuilds them, and PyTorch as the oracle."""

import numpy as np
import pytest
from helpers import assert_close

import tinymed as tm
import tinymed.functional as F
from tinymed.models import CLASSIFIERS, MODELS, LeNet, MedCNN, ModelError, build_model, model_spec

SMALL_MEDCNN = {"channels": [4, 8, 8], "num_heads": 2}


@pytest.mark.parametrize(
    "name,config",
    [("lenet", {}), ("medcnn", SMALL_MEDCNN), ("medcnn", {**SMALL_MEDCNN, "in_channels": 3, "num_classes": 8})],
)
def test_shapes_and_every_parameter_gets_a_gradient(name, config):
    tm.manual_seed(0)
    model = build_model(name, config)
    c, k = config.get("in_channels", 1), config.get("num_classes", 2)
    x = tm.randn(3, c, 28, 28)
    logits = model(x)
    assert logits.shape == (3, k)
    assert model.forward_features(x).shape[0] == 3
    F.cross_entropy(logits, tm.tensor(np.arange(3) % k)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, pname


def test_lenet_is_the_classic_listing():
    # LeNet-5 with 10 classes has 61,706 parameters; padding 2 keeps its 16*5*5 flatten on 28x28.
    model = LeNet(num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 61706
    assert model.fc1.weight.shape == (120, 400)


def test_registry_rebuilds_a_model_from_its_spec():
    tm.manual_seed(0)
    model = build_model("medcnn", SMALL_MEDCNN).eval()
    spec = model_spec(model)
    assert spec == {
        "name": "medcnn",
        "config": {"in_channels": 1, "num_classes": 2, "channels": [4, 8, 8], "num_heads": 2, "dropout": 0.2},
    }
    tm.manual_seed(1)
    rebuilt = build_model(spec["name"], spec["config"]).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = tm.randn(2, 1, 28, 28)
    assert np.array_equal(model(x).numpy(), rebuilt(x).numpy())
    assert set(CLASSIFIERS) <= set(MODELS)


def test_bad_names_and_configs_are_model_errors():
    with pytest.raises(ModelError, match="unknown model 'resnet'.*lenet"):
        build_model("resnet")
    with pytest.raises(ModelError, match="widht"):
        build_model("medcnn", {"widht": 3})
    with pytest.raises(ModelError, match="num_heads"):
        build_model("medcnn", {"channels": [4, 8, 10], "num_heads": 4})


def test_attention_block_starts_as_the_identity_and_its_weights_are_distributions():
    tm.manual_seed(0)
    model = MedCNN(**SMALL_MEDCNN).eval()
    features = tm.randn(2, 8, 7, 7)
    assert np.array_equal(model.attention(features).numpy(), features.numpy())  # gamma = 0
    weights = model.attention.attention_weights(features).numpy()
    assert weights.shape == (2, 49, 49)
    assert np.allclose(weights.sum(axis=-1), 1, atol=1e-5)


def _torch_lenet(torch):
    nn = torch.nn

    class TorchLeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 2)

        def forward(self, x):
            x = nn.functional.max_pool2d(nn.functional.relu(self.conv1(x)), 2)
            x = nn.functional.max_pool2d(nn.functional.relu(self.conv2(x)), 2)
            x = nn.functional.relu(self.fc1(x.flatten(1)))
            return self.fc3(nn.functional.relu(self.fc2(x)))

    return TorchLeNet()


def _torch_medcnn(torch, channels, heads):
    nn = torch.nn

    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(channels[2], heads, batch_first=True)
            self.gamma = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            n, c, h, w = x.shape
            t = x.flatten(2).transpose(1, 2)
            out, _ = self.attention(t, t, t, need_weights=False)
            return x + self.gamma * out.transpose(1, 2).reshape(n, c, h, w)

    class TorchMedCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.block1, self.block2 = block(1, channels[0], True), block(channels[0], channels[1], True)
            self.block3 = block(channels[1], channels[2], False)
            self.attention, self.dropout, self.fc = Attention(), nn.Dropout(0.2), nn.Linear(channels[2], 2)

        def forward(self, x):
            x = self.attention(self.block3(self.block2(self.block1(x))))
            return self.fc(self.dropout(x.mean(dim=(2, 3))))

    return TorchMedCNN()


@pytest.mark.parametrize("name", ["lenet", "medcnn"])
def test_matches_pytorch_with_the_same_state_dict(name, torch):
    tm.manual_seed(0)
    ours = build_model(name, {} if name == "lenet" else SMALL_MEDCNN)
    theirs = _torch_lenet(torch) if name == "lenet" else _torch_medcnn(torch, [4, 8, 8], 2)
    if name == "medcnn":
        ours.attention.gamma.data[...] = 0.5  # let attention contribute
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict())  # PyTorch's names, in PyTorch's order
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    for train in (True, False):  # batch statistics, then running statistics
        ours.train(train)
        theirs.train(train)
        if name == "medcnn":
            ours.dropout.p = theirs.dropout.p = 0.0
        xt = torch.from_numpy(x).requires_grad_()
        xo = tm.tensor(x, requires_grad=True)
        out_t, out_o = theirs(xt), ours(xo)
        assert_close(out_o, out_t.detach().numpy(), "forward")
        out_t.sum().backward()
        out_o.sum().backward()
        np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-3, atol=1e-5)
