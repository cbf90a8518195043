"""tinymed.distributed, DistributedDataParallel and the trainers on them, run for real: each
test starts a script of tests/distributed/ (or ``tinymed train`` through train_cli.py) under
``mpiexec -n 2`` (or as plain processes) with a timeout, so a hang fails the test instead of
stalling the suite. Tests that need no MPI run in-process, and never initialise MPI in the
pytest process."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same, write_tiny_phantoms

import tinymed
import tinymed.distributed as dist
from tinymed.cli import main
from tinymed.data import DataLoader, DatasetInfo, ImageDataset
from tinymed.distributed.mpi import LAUNCHER_VARIABLES
from tinymed.models import LeNet
from tinymed.nn.parallel import DistributedDataParallel
from tinymed.train.checkpoint import load_checkpoint
from tinymed.train.classifier import TrainConfig, train_classifier
from tinymed.train.run import TrainingError, check_batches_split

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "distributed"
MPIEXEC = shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason='needs mpiexec and mpi4py: pip install "tinymed[distributed]"',
)
# Generous: every script finishes in a few seconds; this only turns a hang into a failure.
HANG_S = 60


def _environment() -> dict[str, str]:
    """This checkout's tinymed, one thread per process (two ranks share two cores), and no
    launcher variables inherited from a surrounding MPI job."""
    env = {name: value for name, value in os.environ.items() if name not in LAUNCHER_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        args, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    """Wait for a process started by :func:`_start`; kill its whole session if it hangs."""
    try:
        output, _ = process.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(process.args)} hung: still running after {HANG_S} s\n{output}")
    return process.returncode, output


def _mpiexec(script: str, *args: str) -> tuple[int, str, float]:
    """Run ``mpiexec -n 2 python script args``; returns status, output and seconds taken."""
    start = time.monotonic()
    status, output = _finish(_start(MPIEXEC, "-n", "2", sys.executable, str(SCRIPTS / script), *args))
    return status, output, time.monotonic() - start


def _tinymed(root: Path, *args: str, interrupt_after_epoch: int | None = None) -> tuple[int, str]:
    """``mpiexec -n 2 tinymed ARGS`` (through train_cli.py), recording into ``root/record``
    what each rank writes under ``root``; returns status and output."""
    (root / "record").mkdir(exist_ok=True)
    interrupt = [] if interrupt_after_epoch is None else ["--interrupt-after-epoch", str(interrupt_after_epoch)]
    status, output, _ = _mpiexec("train_cli.py", str(root / "record"), str(root / "runs"), *interrupt, "--", *args)
    return status, output


# ---------------------------------------------------------------------------- under mpiexec
@needs_mpi
def test_collectives_on_two_ranks():
    status, output, _ = _mpiexec("collectives.py")
    assert status == 0, output
    assert "rank 0: collectives ok" in output and "rank 1: collectives ok" in output, output


@needs_mpi
def test_ddp_lenet_matches_one_process(tmp_path):
    """Two ranks with 4 samples each end with the parameters one process reaches with the
    8-sample batches. Not bitwise: each rank sums its 4 samples' gradients and MPI adds the
    two sums, where one process sums all 8 in one product, and float32 addition depends on
    the order (about 1e-7 relative per gradient; after 3 steps the parameters, of size 0.1
    to 1, differ by 2e-8 at most, measured). atol 1e-6 leaves a margin of 50 and still
    fails a missing average: rank 0's share alone ends up to 3e-2 away (measured)."""
    status, output, _ = _mpiexec("ddp_lenet.py", str(tmp_path / "ddp.npz"))
    assert status == 0, output
    status, output = _finish(_start(sys.executable, str(SCRIPTS / "ddp_lenet.py"), str(tmp_path / "single.npz")))
    assert status == 0, output
    ddp, single = np.load(tmp_path / "ddp.npz"), np.load(tmp_path / "single.npz")
    assert sorted(ddp) == sorted(single) == sorted(LeNet().state_dict())
    for name in single:
        np.testing.assert_allclose(ddp[name], single[name], rtol=0, atol=1e-6, err_msg=name)


@needs_mpi
def test_copies_started_without_mpiexec_say_so():
    """Two copies started side by side are two worlds of one; asked for 2, each refuses."""
    copies = [_start(sys.executable, str(SCRIPTS / "failures.py"), "no-launcher") for _ in range(2)]
    for status, output in map(_finish, copies):
        assert status != 0
        assert "world_size=2 was asked for, but MPI started 1 process(es)" in output, output
        assert "started without an MPI launcher" in output and "mpiexec -n 2" in output, output


@needs_mpi
def test_a_rank_that_quits_makes_the_other_time_out():
    status, output, seconds = _mpiexec("failures.py", "rank-exits")
    assert status != 0, output
    assert "rank 0 caught: all_reduce: rank 0 of 2 waited 2 s for the other ranks" in output, output
    assert "all_reduce(op=SUM) of float32 (3,)" in output, output
    assert "rank 0 then: barrier: an earlier collective failed on rank 0" in output, output
    assert seconds < HANG_S / 2, f"the job took {seconds:.0f} s to end"


@needs_mpi
def test_a_rank_that_raises_aborts_the_job_at_once():
    status, output, seconds = _mpiexec("failures.py", "rank-raises")
    assert status != 0, output
    assert "RuntimeError: rank 1 fails mid-run" in output, output
    # The survivor's timeout is 60 s: ending well before it means the job was aborted.
    assert seconds < 30, f"the job took {seconds:.0f} s to end"


@needs_mpi
def test_a_killed_rank_ends_the_job():
    status, output, seconds = _mpiexec("failures.py", "rank-killed")
    assert status != 0, output
    assert seconds < 30, f"the job took {seconds:.0f} s to end"


# ---------------------------------------------------------------------------- in one process
def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(dist.DistBackendError, match=r'pip install "tinymed\[distributed\]"'):
        dist.init_process_group("mpi")
    assert not dist.is_initialized()


def test_init_process_group_checks_its_arguments():
    with pytest.raises(dist.DistError, match="only backend is 'mpi', got backend='nccl'"):
        dist.init_process_group("nccl")
    with pytest.raises(ValueError, match="timeout must be a positive datetime.timedelta"):
        dist.init_process_group("mpi", timeout=timedelta(0))


def test_without_a_process_group():
    assert not dist.is_initialized()
    for call in (dist.get_rank, dist.barrier, lambda: dist.all_reduce(tinymed.ones(2))):
        with pytest.raises(dist.DistError, match="has not been initialized; call init_process_group"):
            call()
    with pytest.raises(dist.DistError, match="init_process_group"):
        DistributedDataParallel(LeNet())


def test_training_helpers_in_one_process():
    """A plain run is a world of one: the helpers a trainer calls work unchanged."""
    x, y = np.arange(10).reshape(5, 2), np.arange(5)
    shard_x, shard_y = dist.shard(x, y)
    assert np.array_equal(shard_x, x) and np.array_equal(shard_y, y)
    assert dist.mean_over_ranks(total=6.0, count=4) == 1.5
    assert dist.average_over_ranks({"loss": 0.5, "d_real": 0.25}) == {"loss": 0.5, "d_real": 0.25}
    assert dist.is_main_process() and dist.rank_and_world_size() == (0, 1)
    with dist.launched_process_group():  # started without a launcher: no process group
        assert not dist.is_initialized()
    dist.check_resume_world_size(1, "last.npz")
    with pytest.raises(dist.DistError, match=r"last.npz was written by a run of 2 process\(es\), this run has 1"):
        dist.check_resume_world_size(2, "last.npz")


class _Request:
    """A stand-in for a nonblocking MPI request that completes at its ``done_after``-th Test,
    or, given ``done_after_s``, at the first Test that many seconds after it was made."""

    def __init__(self, done_after: int | None = None, done_after_s: float | None = None) -> None:
        self.tests, self.done_after, self.made = 0, done_after, time.monotonic()
        self.done_after_s = done_after_s

    def Test(self) -> bool:
        self.tests += 1
        if self.done_after_s is not None:
            return time.monotonic() - self.made >= self.done_after_s
        return self.tests >= self.done_after


def test_a_short_wait_polls_without_sleeping_and_a_long_one_backs_off(monkeypatch):
    """MPI advances a nonblocking collective only inside Test, so a rank that slept between
    polls would stall a collective that finishes in a millisecond. A wait spins (yielding the
    core) for its first ``_SPIN_S``, and only then sleeps, the pauses doubling up to a cap."""
    from tinymed.distributed import process_group

    pauses: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(process_group.time, "sleep", lambda s: (pauses.append(s), real_sleep(s)))
    group = process_group.ProcessGroup(mpi=None, comm=None, rank=0, size=2, timeout=timedelta(seconds=10))

    quick = _Request(done_after=1000)
    group.wait(quick, "all_reduce", "a test")
    assert quick.tests == 1000 and pauses == []

    slow = _Request(done_after_s=process_group._SPIN_S + 0.05)
    group.wait(slow, "all_reduce", "a test")
    assert pauses and pauses[0] == process_group._FIRST_PAUSE_S, pauses
    assert pauses == sorted(pauses) and max(pauses) <= process_group._LONGEST_PAUSE_S, pauses


# ---------------------------------------------------------------------------- the trainers
# LeNet has neither BatchNorm nor dropout, so two ranks must reach one process's weights.
TINY_CNN = dict(dataset="phantoms", model="lenet", epochs=2, batch_size=16)  # 64 images: 4 steps an epoch


def _cnn_args(data: Path, out: Path, *more: str) -> list[str]:
    options = [f"--{name.replace('_', '-')}={value}" for name, value in TINY_CNN.items()]
    return ["train", "cnn", *options, "--data", str(data), "--out", str(out), *more]


@pytest.fixture(scope="module")
def cnn_on_two_ranks(tmp_path_factory):
    """A tiny ``mpiexec -n 2 tinymed train cnn`` run: (its directory, the data, its output)."""
    root = tmp_path_factory.mktemp("cnn")
    data = write_tiny_phantoms(root / "tiny.npz")
    status, output = _tinymed(root, *_cnn_args(data, root / "runs" / "two"))
    assert status == 0, output
    return root, data, output


@needs_mpi
def test_train_cnn_on_two_ranks_matches_one_process(cnn_on_two_ranks, tmp_path):
    """The same global batches and learning rate as one process: the same weights, to
    float32 round-off. The tolerance is not the 1e-6 of the DDP test: AdamW divides each
    gradient by its running RMS, so where that RMS is below Adam's eps (1e-8) the gradient is
    mostly round-off and its update, up to lr = 1e-2 a step, follows it. After these 8 steps
    the largest difference is 6e-6, at a weight whose gradient RMS is 2e-9 (measured); 1e-4
    leaves a margin of 15 and still fails training on 8-image batches (7e-2 away, measured)."""
    root, data, output = cnn_on_two_ranks
    config = TrainConfig(**TINY_CNN, data_file=str(data), out=str(tmp_path / "one"))
    train_classifier(config, progress=False, log=lambda line: None)
    two, one = load_checkpoint(root / "runs" / "two" / "last.npz"), load_checkpoint(tmp_path / "one" / "last.npz")
    assert two.metadata["world_size"] == 2 and one.metadata["world_size"] == 1
    assert sorted(two.state["model"]) == sorted(one.state["model"])
    for name, weight in one.state["model"].items():
        np.testing.assert_allclose(two.state["model"][name], weight, rtol=0, atol=1e-4, err_msg=name)
    for mine, theirs in zip(two.metadata["history"], one.metadata["history"]):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["val_auc"] == pytest.approx(theirs["val_auc"], abs=1e-3)
    # Rank 0 alone logs (once per epoch, its batch split named) and writes.
    assert output.count("2 processes of 8 images each") == 1 and output.count("epoch   2/2") == 1, output


@needs_mpi
def test_only_rank_0_writes(cnn_on_two_ranks):
    root, _, _ = cnn_on_two_ranks
    written = (root / "record" / "rank0.txt").read_text()
    for name in ("last.npz", "best.npz", "metrics.json", "history.csv", "curves.png", ".lock"):
        assert f"/two/{name}" in written, (name, written)
    assert (root / "record" / "rank1.txt").read_text() == ""


@needs_mpi
def test_resume_on_two_ranks_continues_the_run_exactly(cnn_on_two_ranks):
    """Interrupted after epoch 1 and resumed, the run ends with every bit of the straight
    run: each rank restores the model, optimiser, schedule and generator from last.npz."""
    root, data, _ = cnn_on_two_ranks
    out = root / "runs" / "resumed"
    status, output = _tinymed(root, *_cnn_args(data, out), interrupt_after_epoch=1)
    assert status != 0 and load_checkpoint(out / "last.npz").metadata["epoch"] == 1, output
    status, output = _tinymed(root, *_cnn_args(data, out, "--resume"))
    assert status == 0, output
    straight, resumed = load_checkpoint(root / "runs" / "two" / "last.npz"), load_checkpoint(out / "last.npz")
    assert_same(straight.state, resumed.state)


@needs_mpi
def test_resume_with_another_number_of_processes_is_refused(cnn_on_two_ranks, tmp_path, capsys):
    root, data, _ = cnn_on_two_ranks
    status = main(_cnn_args(data, root / "runs" / "two", "--resume"))
    error = capsys.readouterr().err
    assert status == 1, error
    assert "was written by a run of 2 process(es), this run has 1; resume it with 2 (mpiexec -n 2" in error, error


@needs_mpi
def test_train_gan_on_two_ranks(tmp_path):
    data = write_tiny_phantoms(tmp_path / "tiny.npz")
    out = tmp_path / "runs" / "gan"
    tiny = ["--epochs=1", "--batch-size=16", "--ngf=8", "--ndf=8", "--latent-dim=8"]
    status, output = _tinymed(tmp_path, "train", "gan", "--data", str(data), "--out", str(out), *tiny)
    assert status == 0, output
    checkpoint = load_checkpoint(out / "last.npz")
    assert checkpoint.metadata["world_size"] == 2
    assert all(np.isfinite(value) for value in checkpoint.metadata["history"][0].values())
    assert (out / "samples_epoch_001.png").is_file() and (out / "losses.png").is_file()
    assert (tmp_path / "record" / "rank1.txt").read_text() == ""


def test_batches_must_split_across_the_processes(monkeypatch):
    """Checked before training, on 2 processes: a batch of 15, or 21 images in batches of 10
    with the last one, of 1, kept."""
    info = DatasetInfo("odd", "binary-class", ("a", "b"), n_channels=1)
    dataset = ImageDataset(np.zeros((21, 28, 28), np.uint8), np.arange(21) % 2, info)
    monkeypatch.setattr(dist, "rank_and_world_size", lambda: (0, 2))
    check_batches_split("train cnn", DataLoader(dataset, batch_size=10, drop_last=True))
    with pytest.raises(TrainingError, match="train cnn: --batch-size 15 does not split evenly across 2 processes"):
        check_batches_split("train cnn", DataLoader(dataset, batch_size=15, drop_last=True))
    with pytest.raises(TrainingError, match=r"the last batch \(1 of the 21 training images\) does not split evenly"):
        check_batches_split("train cnn", DataLoader(dataset, batch_size=10))
