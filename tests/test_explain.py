"""Grad-CAM, saliency and attention maps on cases whose answer is known by hand."""

import numpy as np
import pytest
from helpers import assert_close

import tinymed as tm
from tinymed import explain, nn, plots
from tinymed.models import LeNet, MedCNN, ModelError


class PoolThenLinear(nn.Module):
    """features = a 1x1 convolution with weight 1 (so A = x); logits = W mean(A) with
    W = [[-1], [1]]: d logit_1 / dA = +1/(h w) everywhere, d logit_0 / dA = -1/(h w)."""

    gradcam_layer = "features"

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(1, 1, kernel_size=1, bias=False)
        self.fc = nn.Linear(1, 2, bias=False)
        self.features.weight.data[...] = 1.0
        self.fc.weight.data[...] = np.array([[-1.0], [1.0]])

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_gradcam_of_a_known_case():
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    model = PoolThenLinear()
    # alpha = +1/36 for class 1: cam = ReLU(x / 36), scaled to max 1; class 0 sees -x.
    for target, sign in ((1, 1.0), (0, -1.0)):
        cam = explain.gradcam(model, tm.tensor(x), target=target)
        expected = np.maximum(sign * x[:, 0], 0)
        expected /= expected.reshape(2, -1).max(axis=1)[:, None, None]
        np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-6)


def test_explaining_leaves_the_model_as_it_was():
    model = PoolThenLinear().train()
    explain.gradcam(model, tm.tensor(np.ones((1, 1, 4, 4), np.float32)))
    explain.saliency(model, tm.tensor(np.ones((1, 1, 4, 4), np.float32)))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert not model.features._forward_hooks


def test_saliency_of_a_linear_model_is_its_weights():
    model = PoolThenLinear()
    x = tm.tensor(np.random.default_rng(1).standard_normal((1, 1, 4, 4)).astype(np.float32))
    np.testing.assert_allclose(explain.saliency(model, x, target=1), np.ones((1, 4, 4)))


def test_resize_matches_pytorch_bilinear(torch):
    maps = np.random.default_rng(2).random((2, 7, 7))
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[:, None], size=(28, 28), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    assert_close(explain.resize_bilinear(maps, (28, 28)), expected, "bilinear resize")


def test_medcnn_maps_and_the_overlay_figure(tmp_path):
    tm.manual_seed(0)
    model = MedCNN(channels=[4, 8, 8], num_heads=2)
    x = tm.randn(2, 1, 28, 28)
    cam = explain.gradcam(model, x)
    attention = explain.attention_map(model, x)
    for heatmap in (cam, attention, explain.saliency(model, x)):
        assert heatmap.shape == (2, 28, 28)
        assert heatmap.min() >= 0 and heatmap.max() <= 1
    assert explain.attention_map(LeNet(), x) is None
    plots.plot_explanation(
        np.random.default_rng(0).random((28, 28)),
        {"Grad-CAM": cam[0], "attention": attention[0]},
        tmp_path / "e.png",
        title="t",
    )
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_or_unsuitable_layers_are_named():
    model = MedCNN(channels=[4, 8, 8], num_heads=2)
    x = tm.randn(1, 1, 28, 28)
    with pytest.raises(ModelError, match="no layer 'block9'.*block1"):
        explain.gradcam(model, x, layer="block9")
    with pytest.raises(ModelError, match="feature map"):
        explain.gradcam(model, x, layer="fc")
