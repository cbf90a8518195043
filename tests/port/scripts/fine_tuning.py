"""Fine-tuning in PyTorch's words: "pretrained" weights saved and loaded with torch.save and
torch.load, the backbone frozen with requires_grad_(False) and kept in eval mode, a new head
for the new task, an optimizer over filter(lambda p: p.requires_grad, model.parameters()),
then the last block unfrozen and given to the optimizer with add_param_group at a lower
learning rate.

The new head starts at zero (nn.init.zeros_), a common choice that also makes the run
deterministic given the pretrained weights.
"""

import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.block2(self.block1(x))), 1)


class Classifier(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = Backbone()
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def build():
    """The model as pretrained on a 10-class task."""
    return Classifier(num_classes=10)


def train(model, loader, optimizer, steps):
    losses = []
    for _, (images, labels) in zip(range(steps), loader):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def run(pretrained, workdir):
    path = os.path.join(workdir, "pretrained.pt")
    torch.save(pretrained.state_dict(), path)

    model = Classifier(num_classes=10)
    model.load_state_dict(torch.load(path))
    model.fc = nn.Linear(model.fc.in_features, 2)  # the new task has two classes
    nn.init.zeros_(model.fc.weight)
    nn.init.zeros_(model.fc.bias)
    model.features.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.SGD(filter(lambda p: p.requires_grad, model.parameters()), lr=0.1, momentum=0.9)

    rng = np.random.default_rng(0)
    images = rng.standard_normal((40, 1, 12, 12)).astype(np.float32)
    labels = (images[:, 0, :6].mean(axis=(1, 2)) > images[:, 0, 6:].mean(axis=(1, 2))).astype(np.int64)
    loader = DataLoader(TensorDataset(torch.from_numpy(images), torch.from_numpy(labels)), batch_size=8)

    model.train()
    model.features.eval()  # frozen BatchNorm keeps its pretrained statistics
    before = {name: p.detach().clone() for name, p in model.features.named_parameters()}
    head_losses = train(model, loader, optimizer, steps=5)
    unchanged = all(bool((before[name] == p).all()) for name, p in model.features.named_parameters())
    untouched = all(p.grad is None for p in model.features.parameters())

    model.features.block2.requires_grad_(True)
    model.features.block2.train()
    optimizer.add_param_group({"params": model.features.block2.parameters(), "lr": 0.01})
    deeper_losses = train(model, loader, optimizer, steps=5)
    return {
        "trainable_at_first": trainable,
        "trainable_later": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "backbone_unchanged": unchanged,
        "backbone_got_no_grad": untouched,
        "head_losses": head_losses,
        "deeper_losses": deeper_losses,
        "lrs": [group["lr"] for group in optimizer.param_groups],
        "block1_still_frozen": all(not p.requires_grad for p in model.features.block1.parameters()),
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as workdir:
        print(run(build(), workdir))
