"""The GAN recipe study: a smoke run trains, scores and tabulates each recipe; a second call
trains nothing."""

import json

import numpy as np
from helpers import write_medmnist_file, write_untrained_classifier

from benchmarks.gan_study import FIGURES, main


def test_quick_study_scores_each_recipe_and_resumes_without_training(tmp_path, capsys):
    data = tmp_path / "tiny.npz"
    write_medmnist_file(data, n=16)
    classifier = write_untrained_classifier(tmp_path / "cnn.npz")
    args = ["--quick", "--data", str(data), "--classifier", str(classifier), "--seeds", "0"]
    args += ["--out", str(tmp_path / "study"), "--recipes", "pytorch", "ema-lr-4e-4"]
    assert main(args) == 0
    assert capsys.readouterr().out.count("training in") == 2
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert [row["recipe"] for row in study["summary"]] == ["pytorch", "ema-lr-4e-4"]
    assert study["recipes"]["ema-lr-4e-4"]["lr"] == 4e-4 and study["recipes"]["pytorch"]["epochs"] == 1
    for row in study["runs"]:
        assert all(row[name] is not None for name in FIGURES)
        assert np.isfinite(row["fd"]) and 0 <= row["precision"] <= 1 and row["epochs"] == 1
    # Without an EMA the raw generator is the user's; with one, it is scored apart from it.
    pytorch, ema = study["runs"]
    assert pytorch["fd_raw"] == pytorch["fd"] and ema["fd_raw"] != ema["fd"]
    assert not (tmp_path / "study" / "pytorch" / "seed-0" / "evaluate-gan-raw.json").exists()
    assert "| ema-lr-4e-4 | 1 |" in (tmp_path / "study" / "study.md").read_text()
    assert (tmp_path / "study" / "study.png").stat().st_size > 0

    scores = tmp_path / "study" / "pytorch" / "seed-0" / "evaluate-gan.json"
    written = scores.stat().st_mtime_ns
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "training in" not in second and second.count("done already") == 2
    assert scores.stat().st_mtime_ns == written
    assert json.loads((tmp_path / "study" / "study.json").read_text())["runs"] == study["runs"]
