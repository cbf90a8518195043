"""A LeNet-5 training loop in everyday PyTorch: a TensorDataset and DataLoader, SGD with
momentum, a StepLR schedule, gradient clipping, evaluation under no_grad, and a checkpoint of
model and optimizer saved, loaded and resumed.

``build()`` makes the model, ``run(model, workdir)`` trains and evaluates it and returns what
it saw. The data come from NumPy with a fixed seed, and nothing is shuffled, so a run is
deterministic given the initial weights.
"""

import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class LeNet(nn.Module):
    def __init__(self, num_classes=2):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def make_dataset(n, seed):
    """Noise images; those of class 1 carry a bright square, so there is something to learn."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    images[labels == 1, :, 10:18, 10:18] += 1.5
    return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))


def build():
    return LeNet()


def evaluate(model, loader, device):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return correct / total


def run(model, workdir, epochs=2):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    train_loader = DataLoader(make_dataset(64, seed=0), batch_size=16, shuffle=False)
    test_loader = DataLoader(make_dataset(32, seed=1), batch_size=32)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    seen = {"loss": [], "grad_norm": [], "lr": []}
    for epoch in range(epochs):
        model.train()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            seen["loss"].append(loss.item())
            seen["grad_norm"].append(grad_norm.item())
        scheduler.step()
        seen["lr"].append(scheduler.get_last_lr()[0])
        print(f"epoch {epoch}: loss {seen['loss'][-1]:.4f}, lr {seen['lr'][-1]}")
    seen["accuracy"] = evaluate(model, test_loader, device)

    path = os.path.join(workdir, "lenet.pt")
    torch.save({"epoch": epochs, "model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    checkpoint = torch.load(path)
    restored = LeNet().to(device)
    restored.load_state_dict(checkpoint["model"])
    resumed = torch.optim.SGD(restored.parameters(), lr=0.05, momentum=0.9)
    resumed.load_state_dict(checkpoint["optimizer"])
    seen["restored_accuracy"] = evaluate(restored, test_loader, device)
    seen["resumed_epoch"] = checkpoint["epoch"]
    seen["resumed_lr"] = resumed.param_groups[0]["lr"]
    return seen


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as workdir:
        print(run(build(), workdir))
