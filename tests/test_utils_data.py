"""tinymed.utils.data against torch.utils.data: collation, batching, samplers, splits and
DistributedSampler give PyTorch's results wherever no random generator is involved."""

import collections
import warnings

import numpy as np
import pytest

import tinymed as tm
from tinymed.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
    default_convert,
    random_split,
)


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is the oracle for tinymed.utils.data")


Point = collections.namedtuple("Point", ["x", "label"])


def samples():
    """Samples of every kind default_collate handles, as plain Python/NumPy data."""
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.standard_normal((2, 3)).astype(np.float32),
            "mask": rng.random((2, 3)) > 0.5,
            "counts": rng.integers(0, 9, size=4).astype(np.uint8),
            "score": float(rng.random()),
            "label": int(rng.integers(0, 5)),
            "flag": bool(i % 2),
            "np_scalar": np.float64(rng.random()),
            "np_int": np.int32(i),
            "name": f"case{i}",
            "pair": (i, float(i) / 2),
            "list": [np.arange(3) * i, i],
            "point": Point(np.full(2, i, dtype=np.float64), i),
        }
        for i in range(3)
    ]


def as_numpy(value):
    """A collated batch, tinymed's or torch's, as nested NumPy data for comparison."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return ("tensor", str(np.asarray(value.numpy()).dtype), np.asarray(value.numpy()).tolist())
    if isinstance(value, dict):
        return {key: as_numpy(v) for key, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return (type(value).__name__, *(as_numpy(v) for v in value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [as_numpy(v) for v in value])
    return value


def torch_samples(torch, batch):
    """The same samples with tinymed tensors swapped for torch tensors."""
    if isinstance(batch, tm.Tensor):
        return torch.from_numpy(batch.numpy())
    if isinstance(batch, dict):
        return {key: torch_samples(torch, v) for key, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(torch_samples(torch, v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(torch_samples(torch, v) for v in batch)
    return batch


def test_default_collate_matches_torch(torch):
    from torch.utils.data import default_collate as torch_collate

    batch = samples()
    assert as_numpy(default_collate(batch)) == as_numpy(torch_collate(batch))


def test_default_collate_stacks_tensors_as_torch(torch):
    from torch.utils.data import default_collate as torch_collate

    rng = np.random.default_rng(1)
    batch = [(tm.tensor(rng.standard_normal((3, 2))), tm.tensor(i)) for i in range(4)]
    ours = default_collate(batch)
    assert isinstance(ours, list) and all(isinstance(t, tm.Tensor) for t in ours)
    assert as_numpy(ours) == as_numpy(torch_collate(torch_samples(torch, batch)))


def test_default_convert_matches_torch(torch):
    from torch.utils.data import default_convert as torch_convert

    for sample in samples():
        assert as_numpy(default_convert(sample)) == as_numpy(torch_convert(sample))


def test_default_collate_refusals():
    with pytest.raises(TypeError, match="default_collate: .*found object"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="dtype <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])


class Squares(Dataset):
    """A map-style dataset written the PyTorch way."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.array([i, i * i], dtype=np.float64), i % 3


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(batch_size=4),
        dict(batch_size=4, drop_last=True),
        dict(batch_size=3, sampler=[5, 1, 1, 8, 0]),
        dict(batch_size=None),
        dict(batch_sampler=[[0, 9], [3], [4, 4, 2]]),
        dict(batch_size=4, collate_fn=lambda batch: [sample[1] for sample in batch]),
    ],
)
def test_dataloader_batches_match_torch(torch, options):
    ours = DataLoader(Squares(10), **options)
    theirs = torch.utils.data.DataLoader(Squares(10), **options)
    assert len(ours) == len(theirs)
    assert [as_numpy(b) for b in ours] == [as_numpy(b) for b in theirs]


@pytest.mark.parametrize("options", [dict(batch_size=4), dict(batch_size=4, drop_last=True), dict(batch_size=None)])
def test_iterable_dataset_batches_match_torch(torch, options):
    class TorchStream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(range(10))

        def __len__(self):
            return 10

    ours = DataLoader(Stream(10), **options)
    theirs = torch.utils.data.DataLoader(TorchStream(), **options)
    assert len(ours) == len(theirs)
    assert [as_numpy(b) for b in ours] == [as_numpy(b) for b in theirs]


def test_any_object_with_len_and_getitem_is_a_dataset():
    images = np.arange(12, dtype=np.float32).reshape(6, 2)
    batches = list(DataLoader(images, batch_size=4))
    assert [b.shape for b in batches] == [(4, 2), (2, 2)]
    np.testing.assert_array_equal(batches[1].numpy(), images[4:])


def test_tensor_dataset_and_subset():
    x = tm.arange(10).reshape(5, 2)
    y = tm.tensor([0, 1, 0, 1, 1])
    dataset = TensorDataset(x, y)
    assert len(dataset) == 5
    xi, yi = dataset[3]
    assert xi.tolist() == [6, 7] and yi.item() == 1
    subset = Subset(dataset, [4, 0])
    assert len(subset) == 2 and subset[0][0].tolist() == [8, 9]
    (xb, yb) = next(iter(DataLoader(subset, batch_size=2)))
    assert xb.tolist() == [[8, 9], [0, 1]] and yb.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"size mismatch between tensors: first dims \[5, 4\]"):
        TensorDataset(x, y[:4])
    with pytest.raises(TypeError, match="tensor 1 must be a Tensor"):
        TensorDataset(x, [0, 1, 0, 1, 1])


def test_random_sampler_is_a_permutation_reproducible_from_the_seed():
    sampler = RandomSampler(range(7), generator=tm.Generator().manual_seed(3))
    first, second = list(sampler), list(sampler)
    assert sorted(first) == sorted(second) == list(range(7)) and first != second
    assert list(RandomSampler(range(7), generator=tm.Generator().manual_seed(3))) == first
    tm.manual_seed(5)
    global_order = list(RandomSampler(range(7)))
    tm.manual_seed(5)
    assert list(RandomSampler(range(7))) == global_order
    longer = list(RandomSampler(range(4), num_samples=10, generator=tm.Generator().manual_seed(0)))
    assert len(longer) == 10 and sorted(longer[:4]) == sorted(longer[4:8]) == [0, 1, 2, 3]
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50, generator=tm.Generator().manual_seed(0)))
    assert len(drawn) == 50 and set(drawn) == {0, 1, 2}
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError, match="RandomSampler: generator must be a tinymed.Generator or None, got int"):
        list(RandomSampler(range(3), generator=42))
    with pytest.raises(TypeError, match="generator must be a tinymed.Generator or None, got Generator"):
        list(RandomSampler(range(3), generator=np.random.default_rng(0)))


def test_shuffled_loader_visits_every_sample_once_per_epoch():
    loader = DataLoader(Squares(10), batch_size=3, shuffle=True, generator=tm.Generator().manual_seed(0))
    epochs = [[int(i) for batch in loader for i in batch[0][:, 0].tolist()] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(10)) and epochs[0] != epochs[1]


def test_samplers_and_batch_sampler_match_torch(torch):
    from torch.utils.data import BatchSampler as TorchBatchSampler
    from torch.utils.data import SequentialSampler as TorchSequentialSampler

    assert list(SequentialSampler(range(5))) == list(TorchSequentialSampler(range(5)))
    for drop_last in (False, True):
        ours = BatchSampler(SequentialSampler(range(10)), 4, drop_last)
        theirs = TorchBatchSampler(TorchSequentialSampler(range(10)), 4, drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        BatchSampler(range(3), 0, False)


@pytest.mark.parametrize("lengths", [[3, 7], [0.3, 0.3, 0.4], [0.5, 0.5], [0.26, 0.74], [10, 0]])
def test_random_split_lengths_match_torch(torch, lengths):
    ours = random_split(range(10), lengths, generator=tm.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.utils.data.random_split(range(10), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    assert sorted(i for s in ours for i in s) == list(range(10))


def test_random_split_is_reproducible_and_refuses_bad_lengths():
    first = random_split(range(10), [0.5, 0.5], generator=tm.Generator().manual_seed(1))
    again = random_split(range(10), [0.5, 0.5], generator=tm.Generator().manual_seed(1))
    assert [list(s) for s in first] == [list(s) for s in again]
    with pytest.raises(ValueError, match="summing to the dataset's length 10"):
        random_split(range(10), [3, 3])
    with pytest.raises(ValueError, match="fraction at index 0 is not between 0 and 1, got 1.5"):
        random_split(range(10), [1.5, -0.5])
    with pytest.warns(UserWarning, match="length of split at index 1 is 0"):
        random_split(range(2), [0.9, 0.1])


@pytest.mark.parametrize("n, replicas", [(10, 3), (10, 5), (7, 4), (2, 5), (12, 4)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_matches_torch(torch, n, replicas, drop_last):
    from torch.utils.data import DistributedSampler as TorchDistributedSampler

    for rank in range(replicas):
        ours = DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = TorchDistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        # Shuffling only relabels the order PyTorch pads and strides.
        shuffled = DistributedSampler(range(n), replicas, rank, shuffle=True, seed=4, drop_last=drop_last)
        shuffled.set_epoch(2)
        order = np.random.default_rng(4 + 2).permutation(n)
        assert list(shuffled) == [int(order[i]) for i in theirs]


def test_distributed_sampler_epochs_and_errors():
    sampler = DistributedSampler(range(20), num_replicas=2, rank=0, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    other_rank = DistributedSampler(range(20), num_replicas=2, rank=1, seed=1)
    assert sorted(first + list(other_rank)) == list(range(20))
    with pytest.raises(ValueError, match="num_replicas and rank must be given"):
        DistributedSampler(range(4))
    with pytest.raises(ValueError, match=r"invalid rank 2, rank should be in the interval \[0, 1\]"):
        DistributedSampler(range(4), num_replicas=2, rank=2)


def test_dataloader_option_errors_and_workers():
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(Squares(4), sampler=[0, 1], shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(Squares(4), batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="mutually exclusive with drop_last"):
        DataLoader(Squares(4), batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Stream(4), shuffle=True)
    with pytest.raises(ValueError, match="persistent_workers needs num_workers > 0"):
        DataLoader(Squares(4), persistent_workers=True)
    with pytest.warns(UserWarning, match="num_workers=2 is ignored"):
        loader = DataLoader(Squares(4), batch_size=2, num_workers=2)
    assert [b[1].tolist() for b in loader] == [[0, 1], [2, 0]]
