"""The DCGAN tutorial's training step, in PyTorch's words: a generator of ConvTranspose2d +
BatchNorm2d + ReLU and a discriminator of Conv2d + LeakyReLU, the tutorial's weights_init,
BCELoss against label tensors filled with 1 and 0, and Adam with betas (0.5, 0.999) for both.

Sized for a test (16x16 images, 8 feature maps). The noise comes from a NumPy generator with
a fixed seed instead of ``torch.randn``, so that two runs from the same weights see the same
noise.
"""

import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

nz, ngf, ndf, nc = 16, 8, 8, 1
lr, beta1 = 0.0002, 0.5


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),  # (ngf*4) x 4 x 4
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # (ngf*2) x 8 x 8
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),  # nc x 16 x 16
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # ndf x 8 x 8
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # (ndf*2) x 4 x 4
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def build():
    netG, netD = Generator(), Discriminator()
    netG.apply(weights_init)
    netD.apply(weights_init)
    return netG, netD


def run(models, workdir, iterations=4, batch_size=8):
    netG, netD = models
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    netG.to(device)
    netD.to(device)
    rng = np.random.default_rng(0)
    real_images = np.tanh(rng.standard_normal((iterations * batch_size, nc, 16, 16))).astype(np.float32)
    dataloader = DataLoader(TensorDataset(torch.from_numpy(real_images)), batch_size=batch_size, shuffle=False)

    criterion = nn.BCELoss()
    fixed_noise = torch.from_numpy(rng.standard_normal((4, nz, 1, 1)).astype(np.float32)).to(device)
    real_label, fake_label = 1.0, 0.0
    optimizerD = optim.Adam(netD.parameters(), lr=lr, betas=(beta1, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=lr, betas=(beta1, 0.999))

    seen = {"errD": [], "errG": [], "D_x": [], "D_G_z1": [], "D_G_z2": []}
    for i, data in enumerate(dataloader, 0):
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real_cpu = data[0].to(device)
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), real_label, dtype=torch.float, device=device)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()

        noise = torch.from_numpy(rng.standard_normal((b_size, nz, 1, 1)).astype(np.float32)).to(device)
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()

        # (2) Update G: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(real_label)  # fake labels are real for generator cost
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()

        print(f"[{i}/{len(dataloader)}] Loss_D: {errD.item():.4f} Loss_G: {errG.item():.4f} D(x): {D_x:.4f}")
        for name, value in zip(seen, (errD.item(), errG.item(), D_x, D_G_z1, D_G_z2)):
            seen[name].append(value)

    with torch.no_grad():
        samples = netG(fixed_noise).detach().cpu()
    seen["samples_mean"] = samples.mean().item()
    seen["samples_shape"] = list(samples.shape)
    return seen


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as workdir:
        print(run(build(), workdir))
