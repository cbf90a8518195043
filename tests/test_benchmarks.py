"""The benchmark command: its smoke test writes valid JSON and plots, and its parts agree."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import implementations, primitives
from benchmarks.__main__ import main
from benchmarks.timing import median_ms

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_quick_run_writes_json_tables_and_plots(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is the baseline of every ratio")
    done = _run("--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "benchmark.json").read_text())
    assert results["machine"]["cpu"] and results["machine"]["logical_cpus"] >= 1
    assert results["machine"]["versions"]["numpy"] == np.__version__
    assert results["roofline"]["cpu"]["peak_gflops"] > 0 and results["roofline"]["cpu"]["bandwidth_gbs"] > 0
    rows = results["primitives"]
    assert {row["op"] for row in rows} == {"conv2d", "conv_transpose2d", "max_pool2d", "linear", "attention"}
    for row in rows:
        assert row["ms"]["tinymed numpy"] > 0 and row["ms"]["torch cpu"] > 0
        assert row["error_vs_torch"]["tinymed numpy"] < 1e-3
    assert {step["model"] for step in results["training_steps"]} == {"lenet", "medcnn", "dcgan"}
    assert results["mismatches"] == []
    assert "Training step" in (tmp_path / "tables.md").read_text()
    plots = sorted(tmp_path.glob("*.png"))
    assert {"ratio_to_torch.png", "roofline-cpu.png", "time_vs_size-cpu-conv2d.png"} <= {p.name for p in plots}
    assert all(p.stat().st_size > 1000 for p in plots)

    # The outputs are drawn from the JSON alone: --replot redraws the same files elsewhere.
    assert main(["--replot", str(tmp_path), "--out", str(tmp_path / "again")]) == 0
    assert {p.name for p in (tmp_path / "again").glob("*.png")} == {p.name for p in plots}
    assert (tmp_path / "again" / "tables.md").read_text() == (tmp_path / "tables.md").read_text()


def test_profile_mode_prints_the_table_and_writes_the_plot(tmp_path):
    done = _run("--profile", "lenet", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "outside ops (framework overhead)" in done.stdout
    assert (tmp_path / "profile-lenet.png").stat().st_size > 1000
    record = json.loads((tmp_path / "profile-lenet.json").read_text())
    assert 0 < sum(op["seconds"] for op in record["ops"]) <= record["total_s"]


@pytest.mark.parametrize(
    "case",
    [
        primitives.conv2d(np.random.default_rng(0), 2, 3, 9, 4, 3, 2, 1),
        primitives.conv_transpose2d(np.random.default_rng(0), 2, 4, 5, 3, 4, 2, 1),
        primitives.max_pool2d(np.random.default_rng(0), 2, 3, 8, 2),
        primitives.linear(np.random.default_rng(0), 5, 7, 3),
        primitives.attention(np.random.default_rng(0), 2, 6, 4, is_causal=True),
    ],
    ids=lambda case: case.op,
)
def test_every_implementation_computes_what_torch_computes(case):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference")
    import tinymed.backends as backends

    impls = [implementations.tinymed(backends.get("numpy"), "cpu")]
    if implementations.tinygrad_unavailable_reason() is None:
        impls.append(implementations.tinygrad())
    reference = implementations.torch(torch, "cpu")
    expected = reference.prepare(case)
    assert set(expected) == {part.name for part in case.parts}
    for impl in impls:
        calls = impl.prepare(case)
        for part in case.parts:
            want = [reference.to_numpy(a) for a in implementations.results(expected[part.name]())]
            got = [impl.to_numpy(a) for a in implementations.results(calls[part.name]())]
            assert implementations.relative_error(got, want) < 1e-5, (impl.name, part.name)


def test_work_counts_follow_the_formulas():
    conv = primitives.conv2d(np.random.default_rng(0), 2, 3, 9, 4, 3, 2, 1)  # OH = (9 + 2 - 3) // 2 + 1 = 5
    assert [p.flops for p in conv.parts] == [2 * 2 * 4 * 5 * 5 * 3 * 3 * 3] * 3
    transposed = primitives.conv_transpose2d(np.random.default_rng(0), 2, 4, 5, 3, 4, 2, 1)
    assert transposed.parts[0].flops == 2 * 2 * 4 * 5 * 5 * 3 * 4 * 4  # one term per input pixel and tap
    assert primitives.linear(np.random.default_rng(0), 5, 7, 3).parts[0].flops == 2 * 5 * 7 * 3
    attention = primitives.attention(np.random.default_rng(0), 2, 6, 4)
    assert [p.flops for p in attention.parts] == [4 * 2 * 6 * 6 * 4, 2.5 * 4 * 2 * 6 * 6 * 4]


def test_median_ms_times_each_call_after_the_warm_up():
    calls = []
    ms = median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, lambda: None, repeat=3, warmup=2)
    assert calls == ["a"] * 5 + ["b"] * 5 and set(ms) == {"a", "b"} and all(t >= 0 for t in ms.values())
    with pytest.raises(ValueError, match="repeat"):
        median_ms({"a": lambda: None}, lambda: None, repeat=0)


def test_gan_same_time_smoke_run_writes_json_and_table(tmp_path, torch):
    from helpers import write_medmnist_file, write_untrained_classifier

    from benchmarks import gan_same_time
    from tinymed.train.gan import DEFAULT_BATCH_SIZE, load_gan

    data = tmp_path / "tiny.npz"
    write_medmnist_file(data, n=16)
    classifier = write_untrained_classifier(tmp_path / "cnn.npz")
    argv = ["--data", str(data), "--classifier", str(classifier), "--minutes", "0.01", "--threads", "1", "--width", "8"]
    # Two seeds run by separate invocations (as one per core would) end in one table, in seed order.
    for seed in ("1", "0"):
        assert gan_same_time.main([*argv, "--seeds", seed, "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    pairs = [(row["seed"], row["framework"]) for row in results["rows"]]
    assert pairs == [(0, "tinymed"), (0, "torch"), (1, "tinymed"), (1, "torch")]
    for row in results["rows"]:
        assert row["epochs"] >= 1 and row["steps"] >= 1 and row["seconds"] > 0
        assert np.isfinite(row["fd"]) and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
    # tinymed's steps are its run's: an epoch of the 16 images is one batch at the default batch 16 or above.
    tinymed_row = results["rows"][0]
    assert tinymed_row["steps"] == tinymed_row["epochs"] * max(1, 16 // DEFAULT_BATCH_SIZE)
    # The whole command, start-up and plots included, takes longer than its training.
    assert tinymed_row["command_seconds"] > tinymed_row["seconds"]
    assert [mean["framework"] for mean in results["means"]] == ["tinymed", "torch"]
    assert "| mean | torch |" in (tmp_path / "out" / "results.md").read_text()
    # The PyTorch generator loads as a tinymed GAN, with the tinymed run's architecture: --width's.
    gan, metadata = load_gan(tmp_path / "out" / "seed0" / "torch" / "last.npz")
    assert metadata["train_config"]["recipe"] == "pytorch/examples dcgan" and gan.latent_dim == 100
    for framework in ("tinymed", "torch"):
        _, metadata = load_gan(tmp_path / "out" / "seed0" / framework / "last.npz")
        assert {key: metadata["model"]["config"][key] for key in ("ngf", "ndf")} == {"ngf": 8, "ndf": 8}
