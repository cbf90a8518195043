"""MedMNIST's getting-started loop, in the medmnist package's and PyTorch's words: the flag's
INFO, its dataset class found by name, a transform, DataLoaders, a small CNN trained with SGD
and CrossEntropyLoss (BCEWithLogitsLoss for multi-label flags), and medmnist's Evaluator for
AUC and ACC on each split.

torchvision is not needed: the transform turns the image (an array, or medmnist's PIL image)
into a normalised (1, H, W) tensor itself. ``run`` takes the data's ``root``, where
``pneumoniamnist.npz`` is; ``download=True`` would fetch it.
"""

import tempfile

import medmnist
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import torch.utils.data as data
from medmnist import INFO, Evaluator

data_flag = "pneumoniamnist"
NUM_EPOCHS = 2
BATCH_SIZE = 8
lr = 0.01

info = INFO[data_flag]
task = info["task"]
n_channels = info["n_channels"]
n_classes = len(info["label"])
DataClass = getattr(medmnist, info["python_class"])


def data_transform(img):
    """ToTensor, then Normalize(mean=[.5], std=[.5])."""
    x = torch.tensor(np.asarray(img), dtype=torch.float32).unsqueeze(0) / 255.0
    return (x - 0.5) / 0.5


class Net(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(in_channels, 8, kernel_size=3), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Sequential(
            nn.Conv2d(8, 8, kernel_size=3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2)
        )
        self.layer3 = nn.Sequential(nn.Conv2d(8, 16, kernel_size=3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(16 * 12 * 12, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(x)))
        x = x.view(x.size(0), -1)
        return self.fc(x)


def build():
    return Net(in_channels=n_channels, num_classes=n_classes)


def test(model, split, loader, root):
    model.eval()
    scores = []
    with torch.no_grad():
        for inputs, _ in loader:
            outputs = model(inputs)
            scores.append(outputs.softmax(dim=-1))
    y_score = torch.cat(scores, 0).detach().numpy()
    evaluator = Evaluator(data_flag, split, root=root)
    metrics = evaluator.evaluate(y_score)
    print(f"{split}  auc: {metrics[0]:.3f}  acc: {metrics[1]:.3f}")
    return list(metrics)


def run(model, root, download=False):
    train_dataset = DataClass(split="train", transform=data_transform, download=download, root=root)
    test_dataset = DataClass(split="test", transform=data_transform, download=download, root=root)
    print(train_dataset)
    train_loader = data.DataLoader(dataset=train_dataset, batch_size=BATCH_SIZE, shuffle=False)
    train_loader_at_eval = data.DataLoader(dataset=train_dataset, batch_size=2 * BATCH_SIZE, shuffle=False)
    test_loader = data.DataLoader(dataset=test_dataset, batch_size=2 * BATCH_SIZE, shuffle=False)

    if task == "multi-label, binary-class":
        criterion = nn.BCEWithLogitsLoss()
    else:
        criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    seen = {"loss": []}
    for _ in range(NUM_EPOCHS):
        model.train()
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            outputs = model(inputs)
            if task == "multi-label, binary-class":
                targets = targets.to(torch.float32)
            else:
                targets = targets.squeeze(1).long()
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            seen["loss"].append(loss.item())
    seen["train"] = test(model, "train", train_loader_at_eval, root)
    seen["test"] = test(model, "test", test_loader, root)
    return seen


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as workdir:
        print(run(build(), root=workdir, download=True))
