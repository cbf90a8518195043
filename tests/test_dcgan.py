"""DCGAN networks: shapes, initialisation, the registry, and PyTorch as the oracle."""

import numpy as np
import pytest

import tinymed
from tinymed import nn
from tinymed.models import MODELS, build_model, model_spec
from tinymed.models.dcgan import DCGAN, Discriminator, Generator


@pytest.mark.parametrize("latent_dim", [1, 16, 100])
@pytest.mark.parametrize("batch", [1, 3])
def test_generator_and_discriminator_shapes(latent_dim, batch):
    tinymed.manual_seed(0)
    generator, discriminator = Generator(latent_dim=latent_dim, ngf=8), Discriminator(ndf=8)
    images = generator(tinymed.randn(batch, latent_dim))
    assert images.shape == (batch, 1, 28, 28)
    assert np.abs(images.numpy()).max() <= 1.0  # tanh
    # The PyTorch layout (N, latent, 1, 1) is taken as well, with the same result.
    generator.eval()
    z = tinymed.randn(batch, latent_dim)
    np.testing.assert_array_equal(generator(z).numpy(), generator(z.reshape(batch, latent_dim, 1, 1)).numpy())
    assert discriminator(images).shape == (batch,)


def test_conditional_shapes_and_label_checks():
    tinymed.manual_seed(0)
    gan = DCGAN(latent_dim=10, ngf=8, ndf=8, num_classes=2)
    labels = tinymed.tensor([0, 1, 1])
    images = gan(tinymed.randn(3, 10), labels)
    assert images.shape == (3, 1, 28, 28)
    assert gan.discriminator(images, labels).shape == (3,)
    with pytest.raises(ValueError, match="needs labels"):
        gan(tinymed.randn(3, 10))
    with pytest.raises(ValueError, match="unconditional"):
        Generator(latent_dim=10, ngf=8)(tinymed.randn(3, 10), labels)


def test_bad_shapes_raise_value_errors():
    with pytest.raises(ValueError, match=r"z must have shape \(N, 100\)"):
        Generator(ngf=8)(tinymed.randn(2, 99))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        Discriminator(ndf=8)(tinymed.randn(2, 1, 22, 22))
    with pytest.raises(ValueError, match="latent_dim"):
        Generator(latent_dim=0)


def test_dcgan_initialisation():
    tinymed.manual_seed(0)
    gan = DCGAN(ngf=32, ndf=32)
    for module in gan.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            w = module.weight.numpy()
            assert abs(w.mean()) < 0.003 and abs(w.std() - 0.02) < 0.002, type(module).__name__
            assert module.bias is None
        elif isinstance(module, nn.BatchNorm2d):
            assert abs(module.weight.numpy().mean() - 1.0) < 0.01 and module.weight.numpy().std() < 0.04
            np.testing.assert_array_equal(module.bias.numpy(), 0.0)


def test_registry_rebuilds_the_pair_from_its_spec():
    assert MODELS["dcgan"] is DCGAN
    gan = DCGAN(latent_dim=12, ngf=8, ndf=4, num_classes=2)
    spec = model_spec(gan)
    assert spec == {"name": "dcgan", "config": {"latent_dim": 12, "ngf": 8, "ndf": 4, "channels": 1, "num_classes": 2}}
    rebuilt = build_model(spec["name"], spec["config"])
    assert rebuilt.generator.state_dict().keys() == gan.generator.state_dict().keys()


# ---------------------------------------------------------------------- PyTorch as the oracle


def _torch_twin(torch, module: nn.Module, layers):
    """A torch Sequential of ``layers`` holding ``module.main``'s weights and buffers (float64)."""
    twin = torch.nn.Sequential(*layers).double()
    state = {k.removeprefix("main."): torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()}
    twin.load_state_dict(state)
    return twin


def _compare(torch, ours: nn.Module, twin, x_np: np.ndarray, head=lambda y: y):
    """Forward in training mode (BatchNorm on batch statistics) and backward of a random
    weighting of the output: outputs, input gradients, weight gradients and running
    statistics must agree."""
    x = tinymed.tensor(x_np, requires_grad=True)
    tx = torch.tensor(x_np, requires_grad=True)
    y, ty = ours(x), head(twin(tx))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-9, atol=1e-10)
    weights = np.random.default_rng(1).standard_normal(y.shape)
    (y * tinymed.tensor(weights)).sum().backward()
    (ty * torch.from_numpy(weights)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-8, atol=1e-10)
    torch_params = dict(twin.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad, torch_params[name.removeprefix("main.")].grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=name
        )
    torch_buffers = dict(twin.named_buffers())
    for name, b in ours.named_buffers():
        np.testing.assert_allclose(
            b.numpy(), torch_buffers[name.removeprefix("main.")].numpy(), rtol=1e-9, err_msg=name
        )


def test_generator_matches_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for the GAN layers")
    tinymed.manual_seed(0)
    latent, ngf = 6, 4
    generator = Generator(latent_dim=latent, ngf=ngf).double()
    tnn = torch.nn
    twin = _torch_twin(
        torch,
        generator,
        [
            tnn.ConvTranspose2d(latent, 2 * ngf, 7, 1, 0, bias=False),
            tnn.BatchNorm2d(2 * ngf),
            tnn.ReLU(),
            tnn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ngf),
            tnn.ReLU(),
            tnn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False),
            tnn.Tanh(),
        ],
    )
    z = np.random.default_rng(0).standard_normal((3, latent))
    # torch's first layer takes (N, latent, 1, 1); ours takes either layout.
    _compare(torch, generator, twin, z.reshape(3, latent, 1, 1))


def test_discriminator_matches_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for the GAN layers")
    tinymed.manual_seed(0)
    ndf = 4
    discriminator = Discriminator(ndf=ndf).double()
    tnn = torch.nn
    twin = _torch_twin(
        torch,
        discriminator,
        [
            tnn.Conv2d(1, ndf, 4, 2, 1, bias=False),
            tnn.LeakyReLU(0.2),
            tnn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(2 * ndf),
            tnn.LeakyReLU(0.2),
            tnn.Conv2d(2 * ndf, 1, 7, 1, 0, bias=False),
        ],
    )
    images = np.tanh(np.random.default_rng(0).standard_normal((3, 1, 28, 28)))
    _compare(torch, discriminator, twin, images, head=lambda y: y.reshape(-1))
