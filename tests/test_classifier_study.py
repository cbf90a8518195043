"""The classifier study script: a smoke run writes its table, JSON and plot; a second call
trains nothing."""

import json

from helpers import write_tiny_phantoms

from benchmarks.classifier_study import FIGURES, main


def test_quick_study_writes_its_results_and_resumes_without_training(tmp_path, capsys):
    data = str(write_tiny_phantoms(tmp_path / "tiny.npz"))
    args = ["--quick", "--dataset", "phantoms", "--data", data, "--seeds", "0", "--out", str(tmp_path / "study")]
    assert main([*args, "--recipes", "light", "combined"]) == 0
    first = capsys.readouterr().out
    assert first.count("training in") == 2
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert [row["recipe"] for row in study["summary"]] == ["light", "combined"]
    for row in study["runs"]:
        assert all(row[name] is not None for name in FIGURES)
    assert "| combined | 1 |" in (tmp_path / "study" / "study.md").read_text()
    assert (tmp_path / "study" / "study.png").stat().st_size > 0

    metrics = tmp_path / "study" / "combined" / "seed-0" / "metrics.json"
    written = metrics.stat().st_mtime_ns
    assert main([*args, "--recipes", "light", "combined"]) == 0
    second = capsys.readouterr().out
    assert "training in" not in second and second.count("done already") == 2
    assert metrics.stat().st_mtime_ns == written
    assert json.loads((tmp_path / "study" / "study.json").read_text())["runs"] == study["runs"]
