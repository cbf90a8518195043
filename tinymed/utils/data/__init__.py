"""tinymed.utils.data: datasets, samplers and the DataLoader, with ``torch.utils.data``'s names.

::

    from tinymed.utils.data import DataLoader, TensorDataset, random_split

    dataset = TensorDataset(images, labels)                   # tensors of N samples each
    train, val = random_split(dataset, [0.9, 0.1], generator=tm.Generator().manual_seed(0))
    for x, y in DataLoader(train, batch_size=64, shuffle=True):
        ...                                                   # x, y: Tensors of up to 64 samples

Any object with ``__len__`` and ``__getitem__`` is a dataset; :func:`default_collate` turns a
list of samples into a batch of Tensors exactly as PyTorch's does.

Reproducibility: every random draw here (shuffling, ``RandomSampler``, ``random_split``)
comes from ``generator=`` (a :class:`tinymed.Generator`, as PyTorch's ``torch.Generator``) or,
when it is None, from tinymed's global generator (:mod:`tinymed.random`), so
``tm.manual_seed(n)`` before building and iterating makes a run repeat exactly. The orders
are not PyTorch's (the generators differ); everything not random is.
"""

from tinymed.utils.data.collate import default_collate, default_convert
from tinymed.utils.data.dataloader import DataLoader
from tinymed.utils.data.dataset import Dataset, IterableDataset, Subset, TensorDataset, random_split
from tinymed.utils.data.distributed import DistributedSampler
from tinymed.utils.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = [
    "BatchSampler",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "TensorDataset",
    "default_collate",
    "default_convert",
    "random_split",
]
