"""The classic PyTorch listings a medical-imaging course starts from, run unchanged on
tinymed: each listing below is PyTorch code, executed once after PyTorch's import lines and
once after tinymed's. Both runs start from PyTorch's initial weights (converted to NumPy
and loaded with ``load_state_dict``) and must produce the same losses, outputs and updated
weights."""

import numpy as np
from helpers import tolerance

IMPORTS = {
    "torch": "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nimport torch.optim as optim\n",
    "tinymed": "import math\nimport tinymed as torch\nimport tinymed.nn as nn\nimport tinymed.nn.functional as F\nimport tinymed.optim as optim\n",
}
TOL = tolerance(np.float32)  # the listings train in float32


def run_listing(source, framework):
    """Execute ``source`` after ``framework``'s import lines; return its namespace."""
    namespace = {}
    exec(compile(IMPORTS[framework] + source, f"<listing on {framework}>", "exec"), namespace)
    return namespace


def same_start(listing, *classes):
    """The listing on both frameworks and, for each class, a torch instance and a tinymed
    instance holding the torch instance's weights."""
    on_torch, on_tinymed = run_listing(listing, "torch"), run_listing(listing, "tinymed")
    on_torch["torch"].manual_seed(0)
    pairs = []
    for name in classes:
        model_t, model_m = on_torch[name](), on_tinymed[name]()
        model_m.load_state_dict({k: v.numpy() for k, v in model_t.state_dict().items()})
        pairs.append((model_t, model_m))
    return on_torch, on_tinymed, pairs


def assert_same_weights(model_t, model_m):
    state_t, state_m = model_t.state_dict(), model_m.state_dict()
    assert list(state_t) == list(state_m)
    for key, value in state_t.items():
        np.testing.assert_allclose(state_m[key], value.numpy(), err_msg=key, **TOL)


# --------------------------------------------------------------------------- (1) LeNet

LENET = """
class LeNet(nn.Module):
    def __init__(self):
        super(LeNet, self).__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 4 * 4)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def train(net, trainloader, epochs=2):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for epoch in range(epochs):
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            losses.append(loss.item())
    return losses


def test(net, images, labels):
    net.eval()
    with torch.no_grad():
        outputs = net(images)
        predicted = outputs.argmax(dim=1)
        correct = predicted.eq(labels).sum().item()
    return outputs, correct / labels.size(0)
"""


def test_lenet_trains_like_pytorch(torch):
    on_torch, on_tinymed, [(net_t, net_m)] = same_start(LENET, "LeNet")
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 8)) for _ in range(3)]
    loader_t = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
    import tinymed

    loader_m = [(tinymed.from_numpy(x), tinymed.from_numpy(y)) for x, y in batches]

    losses_t, losses_m = on_torch["train"](net_t, loader_t), on_tinymed["train"](net_m, loader_m)
    assert len(losses_m) == 6
    np.testing.assert_allclose(losses_m, losses_t, **TOL)
    assert_same_weights(net_t, net_m)

    images, labels = rng.standard_normal((5, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 5)
    outputs_t, accuracy_t = on_torch["test"](net_t, torch.from_numpy(images), torch.from_numpy(labels))
    outputs_m, accuracy_m = on_tinymed["test"](net_m, tinymed.from_numpy(images), tinymed.from_numpy(labels))
    np.testing.assert_allclose(outputs_m.numpy(), outputs_t.numpy(), **TOL)
    assert accuracy_m == accuracy_t


# --------------------------------------------------------------------------- (2) DCGAN

DCGAN = """
nz, ngf, ndf, nc = 16, 8, 8, 1
real_label = 1.
fake_label = 0.


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class Generator(nn.Module):
    def __init__(self):
        super(Generator, self).__init__()
        self.main = nn.Sequential(
            # input is Z, going into a convolution: nz x 1 x 1 -> (ngf*4) x 7 x 7
            nn.ConvTranspose2d(nz, ngf * 4, 7, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # (ngf*4) x 7 x 7 -> (ngf*2) x 14 x 14
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # (ngf*2) x 14 x 14 -> nc x 28 x 28
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),
            nn.Tanh()
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self):
        super(Discriminator, self).__init__()
        self.main = nn.Sequential(
            # nc x 28 x 28 -> ndf x 14 x 14
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # ndf x 14 x 14 -> (ndf*2) x 7 x 7
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # (ndf*2) x 7 x 7 -> 1 x 1 x 1
            nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, input):
        return self.main(input)


def train(netG, netD, dataloader, noises):
    criterion = nn.BCELoss()
    optimizerD = optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))
    history = []
    for i, (data, noise) in enumerate(zip(dataloader, noises)):
        ############################
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        ###########################
        netD.zero_grad()
        real_cpu = data
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), real_label, dtype=torch.float)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()

        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()

        ############################
        # (2) Update G network: maximize log(D(G(z)))
        ###########################
        netG.zero_grad()
        label.fill_(real_label)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()
        history.append((errD.item(), errG.item(), D_x, D_G_z1, D_G_z2))
    return history, fake
"""


def test_dcgan_trains_like_pytorch(torch):
    import tinymed

    on_torch, on_tinymed, [(net_g_t, net_g_m), (net_d_t, net_d_m)] = same_start(DCGAN, "Generator", "Discriminator")
    # weights_init runs through Module.apply and nn.init on .data in both frameworks; the
    # weights it drew are then replaced by PyTorch's, so both runs start alike.
    for net_t, net_m in ((net_g_t, net_g_m), (net_d_t, net_d_m)):
        net_t.apply(on_torch["weights_init"])
        net_m.apply(on_tinymed["weights_init"])
        conv_weight = net_m.main[0].weight.numpy()
        assert conv_weight.std() < 0.05 and net_m.main[0].weight.dtype == np.float32
        net_m.load_state_dict({k: v.numpy() for k, v in net_t.state_dict().items()})

    rng = np.random.default_rng(1)
    reals = [np.tanh(rng.standard_normal((4, 1, 28, 28))).astype(np.float32) for _ in range(2)]
    noises = [rng.standard_normal((4, 16, 1, 1)).astype(np.float32) for _ in range(2)]
    history_t, fake_t = on_torch["train"](
        net_g_t, net_d_t, [torch.from_numpy(x) for x in reals], [torch.from_numpy(z) for z in noises]
    )
    history_m, fake_m = on_tinymed["train"](
        net_g_m, net_d_m, [tinymed.from_numpy(x) for x in reals], [tinymed.from_numpy(z) for z in noises]
    )
    assert fake_m.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(np.array(history_m), np.array(history_t), **TOL)
    np.testing.assert_allclose(fake_m.numpy(), fake_t.detach().numpy(), **TOL)
    assert_same_weights(net_g_t, net_g_m)
    assert_same_weights(net_d_t, net_d_m)


# --------------------------------------------------------------------------- (3) self-attention

ATTENTION = """
class MultiHeadSelfAttention(nn.Module):
    def __init__(self, embed_dim=16, num_heads=4):
        super().__init__()
        assert embed_dim % num_heads == 0
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)

    def split_heads(self, x):
        batch, length, _ = x.size()
        x = x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        return x.contiguous().view(batch * self.num_heads, length, self.head_dim)

    def forward(self, x, mask=None):
        batch, length, embed_dim = x.size()
        q = self.split_heads(self.query(x))
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(mask, float('-inf'))
        attn = F.softmax(scores, dim=-1)
        out = torch.bmm(attn, v)
        out = out.view(batch, self.num_heads, length, self.head_dim).transpose(1, 2)
        out = out.contiguous().view(batch, length, embed_dim)
        return self.out(out), attn


def train_step(model, x, target, mask):
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.zero_grad()
    output, attn = model(x, mask)
    loss = F.mse_loss(output, target)
    loss.backward()
    optimizer.step()
    return loss.item(), output, attn
"""


def test_self_attention_listing_matches_pytorch(torch):
    import tinymed

    # The listing steps with SGD: key.bias gets a zero gradient (softmax ignores a shift
    # shared by all keys), which Adam, dividing by the gradient's size, would blow rounding
    # noise up into a full learning-rate step of either sign.
    on_torch, on_tinymed, [(model_t, model_m)] = same_start(ATTENTION, "MultiHeadSelfAttention")
    rng = np.random.default_rng(2)
    x, target = rng.standard_normal((2, 5, 16)).astype(np.float32), rng.standard_normal((2, 5, 16)).astype(np.float32)
    causal = np.triu(np.ones((5, 5), dtype=bool), 1)  # True: a future position, hidden
    loss_t, out_t, attn_t = on_torch["train_step"](model_t, *(torch.from_numpy(a) for a in (x, target, causal)))
    loss_m, out_m, attn_m = on_tinymed["train_step"](model_m, *(tinymed.from_numpy(a) for a in (x, target, causal)))
    np.testing.assert_allclose(loss_m, loss_t, **TOL)
    np.testing.assert_allclose(out_m.numpy(), out_t.detach().numpy(), **TOL)
    np.testing.assert_allclose(attn_m.numpy(), attn_t.detach().numpy(), **TOL)
    assert np.all(attn_m.numpy()[:, causal] == 0)
    assert_same_weights(model_t, model_m)
