"""A Dataset subclass of one's own, in PyTorch's words: images and labels read from a file on
disk, transforms written as small callable classes and chained by a Compose, a target
transform, Subsets for training and validation, and DataLoaders with the default collate
(tensors stacked, Python ints and floats made tensors, dicts kept) feeding a CNN with
GroupNorm, AdaptiveAvgPool2d and Adam.
"""

import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset


def write_images(path, n=48, size=20, seed=0):
    """A stand-in for a folder of scans: uint8 images, a label and a patient age per image."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 120, (n, size, size)).astype(np.uint8)
    images[labels == 1, 6:14, 6:14] += 100  # an opacity
    np.savez(path, images=images, labels=labels, ages=rng.uniform(20, 80, n))


class ScanDataset(Dataset):
    def __init__(self, path, transform=None, target_transform=None):
        arrays = np.load(path)
        self.images, self.labels, self.ages = arrays["images"], arrays["labels"], arrays["ages"]
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        image = torch.from_numpy(self.images[idx]).float().unsqueeze(0) / 255.0
        label = int(self.labels[idx])
        if self.transform:
            image = self.transform(image)
        if self.target_transform:
            label = self.target_transform(label)
        return image, {"label": label, "age": float(self.ages[idx])}


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, x):
        for transform in self.transforms:
            x = transform(x)
        return x


class ReflectPad:
    def __init__(self, padding):
        self.padding = padding

    def __call__(self, x):
        return F.pad(x, (self.padding,) * 4, mode="reflect")


class CenterCrop:
    def __init__(self, size):
        self.size = size

    def __call__(self, x):
        top = (x.shape[-2] - self.size) // 2
        left = (x.shape[-1] - self.size) // 2
        return x[..., top : top + self.size, left : left + self.size]


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, x):
        return (x - self.mean) / self.std


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.GroupNorm(2, 8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
            nn.Conv2d(8, 16, 1),  # pointwise
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(16 + 1, 2)  # the image's features and the patient's age

    def forward(self, x, age):
        return self.classifier(torch.cat((self.features(x), age.unsqueeze(1) / 100.0), dim=1))


def build():
    return Net()


def run(model, workdir, epochs=3):
    path = os.path.join(workdir, "scans.npz")
    write_images(path)
    transform = Compose([ReflectPad(2), CenterCrop(16), Normalize(0.5, 0.25)])
    dataset = ScanDataset(path, transform=transform, target_transform=torch.tensor)
    train_set, val_set = Subset(dataset, range(0, 40)), Subset(dataset, range(40, len(dataset)))
    train_loader = DataLoader(train_set, batch_size=10, shuffle=False)
    val_loader = DataLoader(val_set, batch_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    image, target = dataset[0]
    seen = {"sample_shape": list(image.shape), "sample_label": target["label"].item(), "loss": []}
    for _ in range(epochs):
        model.train()
        for images, targets in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images, targets["age"].float()), targets["label"])
            loss.backward()
            optimizer.step()
            seen["loss"].append(loss.item())
    model.eval()
    with torch.no_grad():
        images, targets = next(iter(val_loader))
        seen["val_batch_dtypes"] = [
            images.dtype == torch.float32,
            targets["label"].dtype == torch.int64,  # 0-d tensors stacked
            targets["age"].dtype == torch.float64,  # Python floats become float64, as in PyTorch
        ]
        probabilities = F.softmax(model(images, targets["age"].float()), dim=1)
        seen["val_probabilities"] = probabilities[:, 1].tolist()
    return seen


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as workdir:
        print(run(build(), workdir))
