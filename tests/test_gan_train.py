"""GAN training, checkpoints and resume, evaluation, repair, and the GAN commands' errors.

Everything runs on tiny networks and a few dozen phantom images written in the MedMNIST layout."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import complete_metadata

import tinymed
from tinymed.cli import main
from tinymed.data import make_phantoms
from tinymed.metrics import frechet_distance, frechet_distance_from_features, knn_precision_recall
from tinymed.models import model_spec
from tinymed.models.dcgan import DCGAN
from tinymed.models.lenet import LeNet
from tinymed.repair import RepairError, inpaint, make_mask
from tinymed.train.checkpoint import load_checkpoint, save_checkpoint
from tinymed.train.gan import GANConfig, GANTrainer, load_gan, train_gan
from tinymed.train.run import TrainingError

TINY = dict(batch_size=16, latent_dim=8, ngf=4, ndf=4)


def _write_npz(path, labels_train, labels_val, seed=0):
    """A MedMNIST-layout file of phantom X-rays with the given labels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, labels in (("train", labels_train), ("val", labels_val)):
        arrays[f"{split}_images"] = make_phantoms(len(labels), rng).images
        arrays[f"{split}_labels"] = np.asarray(labels, np.uint8)[:, None]
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return _write_npz(tmp_path_factory.mktemp("data") / "tiny.npz", np.arange(48) % 2, np.arange(24) % 2)


@pytest.fixture(scope="module")
def gan_checkpoint(tmp_path_factory, data_file):
    out = tmp_path_factory.mktemp("gan")
    train_gan(
        GANConfig(dataset="pneumoniamnist", data_file=data_file, epochs=1, out=str(out), **TINY),
        progress=False,
        log=lambda _: None,
    )
    return out / "last.npz"


def _real_batch(n=16, seed=0):
    images = make_phantoms(n, np.random.default_rng(seed)).images
    return images[:, None].astype(np.float64) / 127.5 - 1.0


# ---------------------------------------------------------------------- the training step


def test_one_step_changes_both_networks_and_lowers_each_ones_loss():
    tinymed.manual_seed(0)
    gan = DCGAN(latent_dim=8, ngf=8, ndf=8).double()
    trainer = GANTrainer(gan)
    real = tinymed.tensor(_real_batch())
    z = tinymed.randn(16, 8, dtype=tinymed.float64)
    before = {name: p.numpy().copy() for name, p in gan.named_parameters()}
    fake = gan.generator(z).detach()
    loss_d_before = trainer.discriminator_loss(real, fake)[0].item()

    result = trainer.step(real, z)

    assert result["loss_d"] == pytest.approx(loss_d_before, rel=1e-9)
    for name, p in gan.named_parameters():
        assert not np.array_equal(p.numpy(), before[name]), f"{name} did not change"
    # D's step lowered D's loss on that batch; G's step lowered G's loss against the new D.
    assert trainer.discriminator_loss(real, fake)[0].item() < loss_d_before
    assert trainer.generator_loss(gan.generator(z)).item() < trainer.generator_loss(fake).item()


def test_label_smoothing_is_one_sided():
    gan = DCGAN(latent_dim=8, ngf=4, ndf=4).double()
    trainer = GANTrainer(gan, label_smoothing=0.1)
    real = tinymed.tensor(_real_batch(4))
    # With D(x) = D(fake) = logit 0 the loss is BCE(0.5, 0.9) + BCE(0.5, 0) = 2 log 2 whatever the
    # targets; check the targets themselves through the logit gradient: sigmoid(0) - target.
    loss, real_logits, fake_logits = trainer.discriminator_loss(real, real)
    real_logits.retain_grad()
    fake_logits.retain_grad()
    loss.backward()
    p_real, p_fake = (1 / (1 + np.exp(-t.numpy())) for t in (real_logits, fake_logits))
    np.testing.assert_allclose(real_logits.grad, (p_real - 0.9) / 4, rtol=1e-9)
    np.testing.assert_allclose(fake_logits.grad, (p_fake - 0.0) / 4, rtol=1e-9)


# ---------------------------------------------------------------------- a run, and resuming it


def test_resume_equals_uninterrupted(tmp_path, data_file):
    config = dict(dataset="pneumoniamnist", data_file=data_file, seed=3, **TINY)
    quiet = dict(progress=False, log=lambda _: None)
    train_gan(GANConfig(epochs=2, out=str(tmp_path / "straight"), **config), **quiet)
    train_gan(GANConfig(epochs=1, out=str(tmp_path / "split"), **config), **quiet)
    train_gan(GANConfig(epochs=2, out=str(tmp_path / "split"), **config), resume=True, **quiet)

    straight, split = (load_checkpoint(tmp_path / run / "last.npz", kind="gan") for run in ("straight", "split"))
    assert set(straight.state) >= {"generator", "discriminator", "optimizer_g", "optimizer_d", "rng", "fixed_z"}
    for net in ("generator", "discriminator"):
        for key, value in straight.state[net].items():
            np.testing.assert_array_equal(split.state[net][key], value, err_msg=f"{net}.{key}")
    for opt in ("optimizer_g", "optimizer_d"):
        for index, state in straight.state[opt]["state"].items():
            for key, value in state.items():
                np.testing.assert_array_equal(split.state[opt]["state"][index][key], value)
    drop_time = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert drop_time(split.metadata["history"]) == drop_time(straight.metadata["history"])
    for name in ("samples_epoch_001.png", "samples_epoch_002.png", "losses.png", "metrics.json"):
        assert (tmp_path / "split" / name).is_file()
    metrics = json.loads((tmp_path / "split" / "metrics.json").read_text())
    # Steps, counted across the resume: as many as Adam took on the generator.
    assert metrics["epochs"] == 2 and metrics["steps"] == int(split.state["optimizer_g"]["state"][0]["step"]) > 2


def test_a_nan_loss_stops_the_gan_with_epoch_and_step_and_keeps_the_last_good_checkpoint(
    tmp_path, data_file, monkeypatch
):
    # 48 training images in batches of 16: the 4th step is epoch 2, step 1.
    calls = []
    original = GANTrainer.step

    def step(self, *args):
        calls.append(1)
        result = original(self, *args)
        return {**result, "loss_g": float("nan")} if len(calls) == 4 else result

    monkeypatch.setattr(GANTrainer, "step", step)
    config = GANConfig(dataset="pneumoniamnist", data_file=data_file, epochs=2, out=str(tmp_path / "run"), **TINY)
    with pytest.raises(TrainingError, match=r"GAN losses became D \S+, G nan at epoch 2, step 1.*good checkpoint is"):
        train_gan(config, progress=False, log=lambda _: None)
    assert load_checkpoint(tmp_path / "run" / "last.npz", kind="gan").metadata["epoch"] == 1


# ---------------------------------------------------------------------- evaluation


def test_frechet_distance_of_two_gaussians_has_its_closed_form():
    # Covariances sharing eigenvectors: d^2 = |mu1 - mu2|^2 + sum (a_i - b_i)^2 for standard
    # deviations a_i, b_i along the shared axes.
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    a, b = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 1.0, 0.5, 1.0])
    mu1, mu2 = rng.standard_normal(4), rng.standard_normal(4)
    sigma1, sigma2 = (rotation @ np.diag(s**2) @ rotation.T for s in (a, b))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((a - b) ** 2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)
    # Fitted to samples, the estimate converges to it.
    x = mu1 + (rng.standard_normal((200_000, 4)) * a) @ rotation.T
    y = mu2 + (rng.standard_normal((200_000, 4)) * b) @ rotation.T
    assert frechet_distance_from_features(x, y) == pytest.approx(expected, rel=0.02)


def test_knn_precision_recall_sees_mode_dropping():
    rng = np.random.default_rng(0)
    mode_a, mode_b = rng.standard_normal((300, 5)), rng.standard_normal((300, 5)) + 20.0
    real = np.concatenate([mode_a, mode_b])
    assert knn_precision_recall(real, real) == (1.0, 1.0)
    assert knn_precision_recall(real, rng.standard_normal((300, 5)) - 20.0) == (0.0, 0.0)
    # Generated images from one of the two modes only: realistic (precision ~1), half the data (recall ~1/2).
    precision, recall = knn_precision_recall(real, rng.standard_normal((600, 5)))
    assert precision > 0.9
    assert 0.4 < recall < 0.55


def _classifier_checkpoint(path):
    tinymed.manual_seed(0)
    model = LeNet()
    save_checkpoint(
        path,
        {"model": model.state_dict()},
        complete_metadata(model=model_spec(model)),
    )
    return str(path)


def test_evaluate_gan_writes_its_json(tmp_path, gan_checkpoint, data_file, capsys):
    classifier = _classifier_checkpoint(tmp_path / "cnn.npz")
    assert (
        main(
            [
                "evaluate-gan",
                str(gan_checkpoint),
                "--classifier",
                classifier,
                "--data",
                data_file,
                "--json",
                str(tmp_path / "gan.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "gan.json").read_text())
    assert {"fd", "fd_floor", "fd_untrained", "precision", "recall"} <= set(report)
    assert all(np.isfinite(report[k]) and report[k] >= 0 for k in ("fd", "fd_floor", "fd_untrained"))
    assert 0 <= report["precision"] <= 1 and 0 <= report["recall"] <= 1
    assert (report["n_generated"], report["n_train"], report["n_val"]) == (48, 48, 24)
    assert "Frechet distance to val, untrained G" in capsys.readouterr().out
    assert report["raw_generator"] is False

    # The same run's raw generator: another generator, so other scores, and the JSON says which.
    argv = ["evaluate-gan", str(gan_checkpoint), "--classifier", classifier, "--data", data_file]
    assert main([*argv, "--raw-generator", "--json", str(tmp_path / "raw.json")]) == 0
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert raw["raw_generator"] is True and raw["fd"] != report["fd"]
    assert raw["fd_floor"] == report["fd_floor"]  # the real images' score does not depend on the generator
    assert "scoring its raw generator" in capsys.readouterr().out


# ---------------------------------------------------------------------- sampling and repair


def test_sample_writes_medmnist_layout(tmp_path, gan_checkpoint, data_file):
    assert main(["sample", str(gan_checkpoint), "--n", "5", "--seed", "1", "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].dtype == np.uint8 and f["images"].shape == (5, 28, 28)
        assert "labels" not in f.files
    conditional = tmp_path / "cgan"
    train_gan(
        GANConfig(
            dataset="pneumoniamnist", data_file=data_file, conditional=True, epochs=1, out=str(conditional), **TINY
        ),
        progress=False,
        log=lambda _: None,
    )
    assert (
        main(["sample", str(conditional / "last.npz"), "--n", "6", "--label", "1", "--out", str(tmp_path / "c.npz")])
        == 0
    )
    with np.load(tmp_path / "c.npz") as f:
        assert f["images"].shape == (6, 28, 28)
        np.testing.assert_array_equal(f["labels"], np.ones((6, 1), np.uint8))


@pytest.mark.parametrize("kind", ["box", "random"])
def test_repair_never_changes_the_known_pixels(kind):
    tinymed.manual_seed(0)
    gan = DCGAN(latent_dim=8, ngf=8, ndf=8)
    image = make_phantoms(1, np.random.default_rng(1)).images[:, None][0].astype(np.float32) / 255.0
    known = make_mask(kind, (28, 28), np.random.default_rng(0))
    assert known.any() and not known.all()
    tinymed.manual_seed(5)
    start = inpaint(gan, image, known, steps=0, restarts=4)
    tinymed.manual_seed(5)
    result = inpaint(gan, image, known, steps=25, restarts=4, lr=0.1)
    np.testing.assert_array_equal(result.repaired[:, known], image[:, known])
    np.testing.assert_allclose(result.repaired[:, ~known], result.generated[:, ~known])
    # The optimisation fits the known pixels better than where it started.
    assert result.context_loss < start.context_loss


def test_make_mask_shapes_and_refusals():
    known = make_mask("box", (28, 28), np.random.default_rng(0), box_size=10)
    assert (~known).sum() == 100
    rows, cols = np.nonzero(~known)
    assert rows.max() - rows.min() == 9 and cols.max() - cols.min() == 9
    with pytest.raises(RepairError, match="covers the whole"):
        make_mask("box", (28, 28), np.random.default_rng(0), box_size=28)
    with pytest.raises(RepairError, match="between 0 and 1"):
        make_mask("random", (28, 28), np.random.default_rng(0), missing=1.0)


# ---------------------------------------------------------------------- bad input, one line each


def _one_line_error(capsys, argv, *fragments):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinymed: error:") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_a_classifier_checkpoint_given_as_a_gan_is_refused(tmp_path, capsys):
    classifier = _classifier_checkpoint(tmp_path / "cnn.npz")
    _one_line_error(
        capsys,
        ["sample", classifier, "--n", "2", "--out", str(tmp_path / "s.npz")],
        "is a classifier checkpoint, not a gan checkpoint",
    )


def test_an_empty_class_selection_is_refused(tmp_path, capsys):
    only_normal = _write_npz(tmp_path / "normal.npz", np.zeros(8), np.zeros(4))
    _one_line_error(
        capsys,
        [
            "train",
            "gan",
            "--dataset",
            "pneumoniamnist",
            "--data",
            only_normal,
            "--label",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
        "no images of class 1",
    )
    _one_line_error(
        capsys,
        [
            "train",
            "gan",
            "--dataset",
            "pneumoniamnist",
            "--data",
            only_normal,
            "--label",
            "7",
            "--out",
            str(tmp_path / "run"),
        ],
        "not a class of pneumoniamnist",
    )


def test_a_mask_covering_everything_is_refused(tmp_path, gan_checkpoint, data_file, capsys):
    _one_line_error(
        capsys,
        [
            "repair",
            str(gan_checkpoint),
            "--image",
            "0",
            "--box-size",
            "28",
            "--data",
            data_file,
            "--out",
            str(tmp_path / "r.png"),
        ],
        "covers the whole 28x28 image",
    )


# ---------------------------------------------------------------------- time budget and EMA


def test_a_time_budget_stops_at_an_epoch_boundary_and_says_why(tmp_path, data_file, monkeypatch):
    # Every epoch takes 10 s of training on the trainer's fake clock (read at its start and
    # end): a 0.5-minute budget fits 3 epochs (after 2, 20 s + a mean of 10 s = 30 s fits;
    # after 3, 40 s would not).
    clock = iter(np.arange(0.0, 1000.0, 10.0))
    monkeypatch.setattr("tinymed.train.gan.time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    lines = []
    out = tmp_path / "run"
    config = dict(dataset="pneumoniamnist", data_file=data_file, **TINY)
    summary = train_gan(GANConfig(epochs=9, minutes=0.5, out=str(out), **config), progress=False, log=lines.append)
    assert summary["epochs"] == 3 and summary["seconds"] == 30.0
    assert summary["stop_reason"].startswith("time budget reached after 3 epochs")
    assert any(line.startswith("time budget reached after 3 epochs") for line in lines)
    assert json.loads((out / "timings.json").read_text())["seconds"] == [10.0, 20.0, 30.0]
    assert load_checkpoint(out / "last.npz", kind="gan").metadata["epoch"] == 3
    # Resuming with a larger budget continues the same run's count: one more epoch fits in 0.7.
    summary = train_gan(
        GANConfig(epochs=9, minutes=0.7, out=str(out), **config), resume=True, progress=False, log=lines.append
    )
    assert summary["epochs"] == 4 and summary["stop_reason"].startswith("time budget reached after 4 epochs")


def test_train_gan_defaults_to_width_32_for_both_networks_and_an_option_overrides_each():
    from tinymed.cli import build_parser
    from tinymed.train.gan import DEFAULT_WIDTH

    assert DEFAULT_WIDTH == 32 and (GANConfig().ngf, GANConfig().ndf) == (DEFAULT_WIDTH, DEFAULT_WIDTH)
    args = build_parser().parse_args(["train", "gan"])
    assert (args.ngf, args.ndf) == (DEFAULT_WIDTH, DEFAULT_WIDTH)
    args = build_parser().parse_args(["train", "gan", "--ngf", "64"])
    assert (args.ngf, args.ndf) == (64, DEFAULT_WIDTH)


def test_default_budget_only_when_neither_epochs_nor_minutes_is_given():
    assert GANConfig(dataset="pneumoniamnist").minutes == 9.0
    assert GANConfig(dataset="pneumoniamnist").epochs == 100
    assert GANConfig(dataset="pneumoniamnist", epochs=20).minutes is None
    assert (GANConfig(dataset="phantoms").epochs, GANConfig(dataset="phantoms").minutes) == (10, None)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--minutes", "0"], "argument --minutes: expected a finite float above 0"),
        (["--minutes", "nan"], "argument --minutes"),
        (["--epochs", "0"], "argument --epochs"),
        (["--ema-decay", "-1"], "argument --ema-decay"),
        (["--ema-decay", "1"], "ema_decay (--ema-decay) must be in [0, 1), got 1.0"),
    ],
)
def test_budget_and_ema_options_are_checked_by_name(tmp_path, capsys, argv, fragment):
    try:
        code = main(["train", "gan", "--out", str(tmp_path / "run"), *argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code != 0
    assert fragment in capsys.readouterr().err


def test_minutes_below_zero_is_refused_by_the_config():
    with pytest.raises(TrainingError, match=r"train gan: minutes \(--minutes\) must be a positive finite number"):
        GANConfig(minutes=-1.0)


def test_the_user_generator_is_an_averaged_model_fed_the_same_steps(tmp_path, data_file):
    from tinymed.optim.swa_utils import AveragedModel, get_ema_warmup_multi_avg_fn

    config = GANConfig(dataset="pneumoniamnist", data_file=data_file, epochs=2, ema_decay=0.9, seed=1, **TINY)
    saved = {}
    original = GANTrainer.step

    def step(self, *args):
        result = original(self, *args)
        # An AveragedModel of our own, fed the raw generator after each step.
        if "ema" not in saved:
            saved["ema"] = AveragedModel(
                self.gan.generator, multi_avg_fn=get_ema_warmup_multi_avg_fn(0.9), use_buffers=True
            )
        saved["ema"].update_parameters(self.gan.generator)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GANTrainer, "step", step)
        train_gan(GANConfig(**{**config.__dict__, "out": str(tmp_path / "run")}), progress=False, log=lambda _: None)
    ours = saved["ema"].module.state_dict()
    checkpoint = load_checkpoint(tmp_path / "run" / "last.npz", kind="gan")
    assert int(checkpoint.state["ema_updates"]) == int(saved["ema"].n_averaged.item()) == 6
    for key, value in checkpoint.state["generator_ema"].items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(ours[key]), err_msg=key)
    gan, _ = load_gan(tmp_path / "run" / "last.npz")
    for key, value in gan.generator.state_dict().items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(checkpoint.state["generator_ema"][key]))
    assert not np.array_equal(
        np.asarray(checkpoint.state["generator_ema"]["main.0.weight"]),
        np.asarray(checkpoint.state["generator"]["main.0.weight"]),
    )
    raw, _ = load_gan(tmp_path / "run" / "last.npz", raw=True)
    for key, value in raw.generator.state_dict().items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(checkpoint.state["generator"][key]), err_msg=key)


def test_ema_decay_0_gives_the_raw_generator_and_old_checkpoints_load_theirs(tmp_path, data_file):
    config = GANConfig(
        dataset="pneumoniamnist", data_file=data_file, epochs=1, ema_decay=0.0, out=str(tmp_path / "raw"), **TINY
    )
    train_gan(config, progress=False, log=lambda _: None)
    checkpoint = load_checkpoint(tmp_path / "raw" / "last.npz", kind="gan")
    assert "generator_ema" not in checkpoint.state
    gan, _ = load_gan(tmp_path / "raw" / "last.npz")
    for key, value in gan.generator.state_dict().items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(checkpoint.state["generator"][key]))


def test_the_ema_warm_up_follows_its_formula():
    from tinymed.optim.swa_utils import AveragedModel, get_ema_warmup_multi_avg_fn

    model = tinymed.nn.Linear(1, 1, bias=False)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_warmup_multi_avg_fn(0.5))
    expected = None
    for t, w in enumerate([1.0, 2.0, 4.0, 8.0, 16.0]):
        model.weight.data.fill_(w)
        averaged.update_parameters(model)
        decay = min(0.5, (1 + t) / (10 + t))
        expected = w if t == 0 else decay * expected + (1 - decay) * w
        assert averaged.module.weight.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="decay must be in"):
        get_ema_warmup_multi_avg_fn(2.0)
