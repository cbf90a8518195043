"""UNet: the shape of every level, the skip connections and their padding on odd sizes,
gradients to every parameter, and the registry that rebuilds it."""

import numpy as np
import pytest

import tinymed as tm
import tinymed.functional as F
from tinymed.models import MODELS, ModelError, UNet, build_model, model_spec


def _shapes_by_layer(model: UNet, x) -> dict[str, tuple[int, ...]]:
    """The output shape of every level's layer (down.k, bottom, up.k, decode.k, head) for input x."""
    shapes, handles = {}, []
    for name, module in model.named_children():
        layers = list(module.named_children()) if name in ("down", "up", "decode") else [("", module)]
        for index, layer in layers:
            key = f"{name}.{index}" if index else name
            handles.append(
                layer.register_forward_hook(lambda m, args, out, key=key: shapes.__setitem__(key, out.shape))
            )
    model(x)
    for handle in handles:
        handle.remove()
    return shapes


@pytest.mark.parametrize("depth, size", [(1, (28, 28)), (2, (28, 28)), (3, (28, 28)), (2, (27, 20)), (3, (9, 17))])
def test_every_level_has_the_documented_shape(depth, size):
    tm.manual_seed(0)
    base, n = 4, 2
    model = UNet(in_channels=3, out_channels=2, base_channels=base, depth=depth)
    shapes = _shapes_by_layer(model, tm.randn(n, 3, *size))
    sizes = [size]
    for _ in range(depth):  # each max pooling halves, rounding down
        sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
    for k in range(depth):
        assert shapes[f"down.{k}"] == (n, base * 2**k, *sizes[k])
    assert shapes["bottom"] == (n, base * 2**depth, *sizes[depth])
    for j, k in enumerate(reversed(range(depth))):  # the decoder climbs from level depth-1 to 0
        below = sizes[k + 1]
        assert shapes[f"up.{j}"] == (n, base * 2**k, 2 * below[0], 2 * below[1])  # before the padding
        assert shapes[f"decode.{j}"] == (n, base * 2**k, *sizes[k])
    assert shapes["head"] == (n, 2, *size)


def test_the_upsampled_map_is_padded_at_its_bottom_and_right():
    # 9 -> pooled 4 -> upsampled 8: the skip's 9th row and column have no partner, and the
    # upsampled half of the concatenation gets a zero row and column there, not at the top.
    tm.manual_seed(0)
    model = UNet(base_channels=2, depth=1)
    seen = []
    model.decode[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].numpy()))
    model(tm.randn(1, 1, 9, 9))
    concatenated = seen[0]
    assert concatenated.shape == (1, 4, 9, 9)
    upsampled = concatenated[:, 2:]  # the skip comes first, then the upsampled map
    assert np.all(upsampled[..., 8, :] == 0) and np.all(upsampled[..., :, 8] == 0)
    assert np.all(upsampled[..., :8, :8] != 0)


def test_the_skip_connection_carries_the_encoders_map():
    tm.manual_seed(0)
    model = UNet(base_channels=2, depth=2)
    skips, concatenations = [], []
    model.down[0].register_forward_hook(lambda m, args, out: skips.append(out.numpy()))
    model.decode[1].register_forward_pre_hook(lambda m, args: concatenations.append(args[0].numpy()))
    model(tm.randn(2, 1, 12, 12))
    np.testing.assert_array_equal(concatenations[0][:, :2], skips[0])


def test_every_parameter_gets_a_gradient():
    tm.manual_seed(0)
    model = UNet(base_channels=2, depth=2)
    target = tm.tensor((np.arange(2 * 16 * 16).reshape(2, 1, 16, 16) % 5 == 0).astype(np.float32))
    F.dice_loss(tm.sigmoid(model(tm.randn(2, 1, 16, 16))), target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.abs(np.asarray(p.grad)).sum() > 0, name


def test_registry_rebuilds_the_unet():
    tm.manual_seed(0)
    model = build_model("unet", {"base_channels": 4, "depth": 1}).eval()
    assert MODELS["unet"] is UNet
    spec = model_spec(model)
    assert spec == {"name": "unet", "config": {"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 1}}
    tm.manual_seed(1)
    rebuilt = build_model(spec["name"], spec["config"]).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = tm.randn(2, 1, 8, 8)
    np.testing.assert_array_equal(model(x).numpy(), rebuilt(x).numpy())


def test_errors_name_the_model_and_the_shapes():
    with pytest.raises(ValueError, match=r"UNet: input must be \(N, C, H, W\) with H and W at least 2\*\*depth = 8"):
        UNet(depth=3)(tm.randn(1, 1, 7, 28))
    with pytest.raises(ValueError, match="UNet: input must be"):
        UNet()(tm.randn(1, 28, 28))
    with pytest.raises(ModelError, match="cannot build model 'unet'.*must be positive"):
        build_model("unet", {"depth": 0})
