"""The evaluator end to end: the digits classifier as extractor, real-data sanity checks,
determinism over seeds and device counts, sweeps that resume, reports."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.ndimage

from jaxgen.cli import common as cli
from jaxgen.core import config as config_lib
from jaxgen.engine import runs
from jaxgen.data.sources import Split
from jaxgen.eval import metrics
from jaxgen.eval.runner import real_features
from tests.helpers import (ROOT, TINY, TRAINING_ONLY, checkpoint_steps, env_with_devices,
                           run_cli, train_tiny)


@pytest.fixture(scope="module")
def digits():
    flags, overrides = cli.parse(cli.parser(""), [*TINY, "--workdir=/nonexistent"])
    config, splits, _ = cli.prepare(flags, overrides)
    extractors = runs.load_extractors(config, splits)

    def features(images, labels=None):
        labels = np.zeros(len(images), np.int32) if labels is None else labels
        return real_features(extractors, Split(images, labels, 16, 10), 128)

    return splits, extractors, features


def _blur(images, sigma):
    out = scipy.ndimage.gaussian_filter(images.astype(np.float32), (0, sigma, sigma, 0))
    return np.clip(np.round(out), 0, 16).astype(np.uint8)


def _translate(images, pixels):
    out = np.zeros_like(images)
    out[:, :, pixels:] = images[:, :, :images.shape[2] - pixels]
    return out


def test_classifier_is_accurate_and_its_accuracy_is_recorded(digits):
    splits, extractors, features = digits
    assert extractors["classes"].test_accuracy > 0.9
    test = features(splits["test"].images, splits["test"].labels)
    accuracy = np.mean(test["label"] == test["true_label"])
    assert accuracy == pytest.approx(extractors["classes"].test_accuracy, abs=1e-6)


def test_classifier_cache_key_covers_only_what_decides_its_weights():
    from jaxgen.core.config import load
    from jaxgen.engine.runs import classifier_directory
    base = classifier_directory(load("experiments/vae_digits.py", []))
    # The cache key of the digits classifier since it was introduced: new config keys must
    # not send every user through a retraining.
    assert base.endswith("classifier-digits-6c3a4d7a82be")
    for unrelated in ("eval.num_samples=7", "eval.batch_size=3", "sample.num=4", "seed=5",
                      "model.latent_dim=3", "train.num_steps=9"):
        assert classifier_directory(load("experiments/vae_digits.py", [unrelated])) == base
    assert classifier_directory(load("experiments/vae_digits.py",
                                     ["eval.extractor_steps=100"])) != base
    assert classifier_directory(load("experiments/vae_fashion_mnist.py", [])) != base
    assert classifier_directory(load("experiments/vae_digits.py", ["data.pad_to=16"])) != base


def test_fid_real_vs_real_near_zero_and_grows_with_corruption(digits):
    splits, _, features = digits
    train, test = splits["train"].images, features(splits["test"].images)["features"]
    real = metrics.fid(features(train)["features"], test)
    noise = np.random.default_rng(0).integers(0, 17, train.shape, dtype=np.uint8)
    noisy = metrics.fid(features(noise)["features"], test)
    blurred = [metrics.fid(features(_blur(train, s))["features"], test) for s in (0.5, 1.0)]
    shifted = [metrics.fid(features(_translate(train, p))["features"], test) for p in (1, 2)]
    assert noisy > 20 * real
    assert real < blurred[0] < blurred[1]
    assert real < shifted[0] < shifted[1]
    # FID of two real sets is symmetric.
    assert metrics.fid(test, features(train)["features"]) == pytest.approx(real, rel=1e-6)


def test_mode_coverage_of_the_test_split_and_of_one_class(digits):
    splits, _, features = digits
    test = splits["test"]
    all_classes = features(test.images)["label"]
    zeros = features(test.images[test.labels == 0])["label"]
    assert metrics.mode_coverage(all_classes, test.labels, 10)["classes_covered"] == 10
    assert metrics.mode_coverage(zeros, test.labels, 10)["classes_covered"] == 1


def test_the_real_column_is_test_images_the_classifier_never_saw(digits, monkeypatch):
    import jax.numpy as jnp

    from jaxgen.core.config import load
    from jaxgen.eval import runner
    splits, extractors, _ = digits
    test = splits["test"]
    read = []
    original = runner.real_features
    monkeypatch.setattr(runner, "real_features",
                        lambda e, split, *a, **k: read.append(split) or original(e, split, *a, **k))
    out = runner.sample_metrics(lambda b, labels: jnp.full((labels.shape[0], 8, 8, 1), 0.5),
                                0, extractors, splits, load("experiments/vae_digits.py", []).eval,
                                0, 1000)
    # Only the test split is read: the training split, the classifier's, never is.
    assert read and all(split is test for split in read)
    rows, reference_rows = runner.real_column_rows(len(test), 1000, 0)
    assert not set(rows) & set(reference_rows)
    assert (out["num_real"], out["num_real_reference"]) == (len(rows), len(reference_rows))
    assert len(rows) + len(reference_rows) == len(test) == out["num_reference"]
    # Unseen images: the classifier's accuracy on them is its test accuracy, not 1.0.
    unseen = original(extractors, test, 128)
    assert np.mean(unseen["label"][rows] == test.labels[rows]) < 1.0
    assert 0 < out["real"]["fid"] < out["model"]["fid"]
    # The sampler's cost, from the batches after the first (which compiles).
    batch = load("experiments/vae_digits.py", []).eval.sample_batch_size
    assert out["sampling"]["batch_size"] == batch and out["sampling"]["seconds_per_1000"] > 0
    assert out["sampling"]["batches_timed"] == -(-1000 // batch) - 1


def _values(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        record = json.load(f)
    return record


@pytest.mark.slow
def test_evaluate_same_seed_same_metrics_and_8_devices_match_1(tmp_path):
    train_tiny(str(tmp_path), 40)
    records = []
    for devices in (None, None, 8):
        result = run_cli("evaluate", [f"--workdir={tmp_path}"], num_devices=devices)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "fid" in result.stdout and "real data" in result.stdout
        records.append(_values(str(tmp_path)))
    first, again, eight = records
    assert first["values"] == again["values"] and first["real"] == again["real"]
    for key, value in first["values"].items():
        assert eight["values"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for key in ("fid", "kid", "precision", "recall", "classes_covered", "class_kl_to_data"):
        assert key in first["values"] and key in first["real"]
    assert first["num_samples"] == 256 and first["extractor"]["classifier_test_accuracy"] > 0.9
    assert first["real"]["fid"] < first["values"]["fid"]


def test_conditional_model_reports_conditional_accuracy(tmp_path):
    train_tiny(str(tmp_path), 40, "--config.model.conditional=True")
    result = run_cli("evaluate", [f"--workdir={tmp_path}", "--num_samples=128"])
    assert result.returncode == 0, result.stderr[-3000:]
    record = _values(str(tmp_path))
    assert 0.0 <= record["values"]["conditional_accuracy"] <= 1.0
    # For real data it is the classifier's accuracy on their labels.
    assert record["real"]["conditional_accuracy"] > 0.9


@pytest.mark.slow
def test_evaluations_differing_only_in_sampling_share_likelihoods(tmp_path):
    train_tiny(str(tmp_path), 10)

    def evaluate(output, *extra):
        result = run_cli("evaluate", [f"--workdir={tmp_path}", f"--output={output}", *extra])
        assert result.returncode == 0, result.stderr[-3000:]
        with open(tmp_path / output) as f:
            return json.load(f)

    first = evaluate("metrics_a.json", "--num_samples=32")
    # As written by a jaxgen older than a base key: its absence meant the default.
    older = json.loads((tmp_path / "metrics_a.json").read_text())
    del older["config"]["train"]["dropout_prng"]
    (tmp_path / "metrics_a.json").write_text(json.dumps(older))
    other_sampling = evaluate("metrics_b.json", "--num_samples=64", "--config.sample.num=4")
    other_examples = evaluate("metrics_c.json", "--num_samples=32", "--num_examples=64")
    assert "likelihood_from" not in first and "neg_elbo" in first["likelihood_keys"]
    assert other_sampling["likelihood_from"] == "metrics_a.json"
    assert other_sampling["num_samples"] == 64
    assert "likelihood_from" not in other_examples  # a different test subset: recomputed
    assert other_examples["values"]["neg_elbo"] != first["values"]["neg_elbo"]
    os.remove(tmp_path / "metrics_a.json")
    recomputed = evaluate("metrics_b.json", "--num_samples=64", "--config.sample.num=4")
    assert "likelihood_from" not in recomputed
    for key in first["likelihood_keys"]:
        assert recomputed["values"][key] == other_sampling["values"][key] == first["values"][key]


def test_inception_without_weights_fails_clearly(tmp_path):
    train_tiny(str(tmp_path), 10)
    result = run_cli("evaluate", [f"--workdir={tmp_path}", "--config.eval.extractor=inception"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: eval.extractor=inception")
    assert not os.path.exists(os.path.join(tmp_path, "metrics.json"))


SWEEP = '''
from jaxgen.cli import sweep
from jaxgen.core import config as config_lib

def get_config():
    return config_lib.sibling({experiments!r} + "/vae_digits.py", "vae_digits").get_config()

def get_sweep():
    return [("beta=1_seed=0", {{"model.beta": 1.0, "seed": 0}}),
            ("beta=1_seed=1", {{"model.beta": 1.0, "seed": 1}}),
            ("beta=4_seed=0", {{"model.beta": 4.0, "seed": 0}})]
'''


def _lock_is_free(workdir) -> bool:
    with open(os.path.join(workdir, "train.lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


@pytest.mark.slow
def test_sweep_killed_mid_point_leaves_no_trainer_and_its_rerun_finishes_every_point(tmp_path):
    """Issue 39: kill -9 of the sweep's process group while a point trains. The trainer,
    in a session of its own, used to train on and block the rerun ('is being trained')."""
    spec = tmp_path / "tiny_sweep.py"
    spec.write_text(SWEEP.format(experiments=os.path.join(ROOT, "experiments")))
    root = tmp_path / "sweep"
    overrides = [a for a in TINY if not a.startswith("--config=")]
    command = [sys.executable, "-m", "jaxgen.sweep", f"--config={spec}", f"--workdir={root}",
               *overrides, "--config.train.num_steps=60", "--config.eval.iwae_samples=10",
               *TRAINING_ONLY]
    listed = subprocess.run([*command, "--print"], cwd=ROOT, env=env_with_devices(),
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 3 and "jaxgen.evaluate" in listed.stdout

    first = root / "beta=1_seed=0" / "metrics.json"
    second = root / "beta=1_seed=1"
    process = subprocess.Popen(command, cwd=ROOT, env=env_with_devices(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 240
    while not checkpoint_steps(str(second)) and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert first.exists() and checkpoint_steps(str(second)), "the sweep never reached point 2"
    assert not _lock_is_free(second), "point 2's trainer was not running at the kill"
    os.killpg(process.pid, signal.SIGKILL)  # the sweep, mid-point
    process.wait()
    finished_at = first.stat().st_mtime_ns
    # No trainer survives the sweep: the point's lock comes free (the kernel's SIGKILL).
    deadline = time.time() + 10
    while not _lock_is_free(second) and time.time() < deadline:
        time.sleep(0.05)
    assert _lock_is_free(second), "the killed sweep's trainer trains on"
    assert checkpoint_steps(str(second))[-1] < 60
    assert not (root / "beta=4_seed=0" / "metrics.json").exists()

    resumed = subprocess.run(command, cwd=ROOT, env=env_with_devices(), capture_output=True,
                             text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "beta=1_seed=0: done already" in resumed.stdout
    assert first.stat().st_mtime_ns == finished_at
    for name in ("beta=1_seed=1", "beta=4_seed=0"):
        assert _values(str(root / name))["step"] == 60

    report = run_cli("report", [str(root), "--metric=neg_elbo", "--x=model.beta"])
    assert report.returncode == 0, report.stderr
    table = (root / "report.md").read_text()
    assert "| model.beta | seeds |" in table
    rows = [line for line in table.splitlines() if line.startswith("| 1.0 |")]
    assert len(rows) == 1 and "| 2 |" in rows[0] and "±" in rows[0]
    assert (root / "report.csv").read_text().startswith("model.beta,seeds,")
    assert (root / "neg_elbo_vs_beta.png").stat().st_size > 0


def test_points_differing_only_in_evaluation_share_one_trained_workdir(tmp_path):
    spec = tmp_path / "eval_sweep.py"
    header = SWEEP.split("def get_sweep")[0].format(experiments=os.path.join(ROOT, "experiments"))
    spec.write_text(header + "def get_sweep():\n    return sweep.grid("
                    "{'model.beta': [1.0, 4.0], 'eval.num_samples': [128, 256]})\n")
    listed = subprocess.run([sys.executable, "-m", "jaxgen.sweep", f"--config={spec}",
                             f"--workdir={tmp_path / 'root'}", "--print"], cwd=ROOT,
                            env=env_with_devices(), capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2  # one line per trained workdir: train, then its two evaluations
    first = lines[0].split(" && ")
    assert len(first) == 3 and "jaxgen.train" in first[0] and "/root/beta=1.0" in first[0]
    assert "--output=metrics_beta=1.0_num_samples=128.json" in first[1]
    assert "--config.eval.num_samples=256" in first[2]
    assert "eval.num_samples" not in first[0]


def test_report_curve_tabulates_a_logged_metric_over_training_per_setting(tmp_path):
    from jaxgen.cli import report
    # Two settings x two seeds of hand-written training logs (no evaluation file).
    for loss, scale in (("minimax", 1.0), ("non_saturating", 10.0)):
        for seed in (0, 1):
            run = tmp_path / f"{loss}_{seed}"
            run.mkdir()
            (run / "config.json").write_text(json.dumps(
                {"seed": seed, "model": {"loss": loss}, "train": {"log_every_steps": 10}}))
            rows = [{"step": s, "split": "train", "g_grad_norm": scale * (s + seed)}
                    for s in (10, 20, 30)]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report.main([str(tmp_path), "--curve=g_grad_norm", "--split=train", "--at_steps=15,30"])
    table = (tmp_path / "g_grad_norm_train_curve.md").read_text()
    # Step 15 takes the first logged step after it (20): mean of 20 and 21, std 0.71.
    assert "| minimax | 2 | 20.5 ± 0.71 | 30.5 ± 0.71 |" in table, table
    assert "| non_saturating | 2 | 205 ± 7.1 | 305 ± 7.1 |" in table, table
    assert (tmp_path / "g_grad_norm_train_over_training.png").is_file()
    with pytest.raises(Exception, match="no run logged 'recall'"):
        report.main([str(tmp_path), "--curve=recall"])


def test_the_report_marks_a_bound_worse_than_the_pixel_histogram():
    from jaxgen.cli import report
    rows = [{"setting": {"model.x": name}, "seeds": 1, "metrics": {
        "vlb_bits_per_dim": (bits, float("nan")),
        "pixel_histogram_bits_per_dim": (2.42, float("nan"))}}
        for name, bits in (("loose", 3.38), ("tight", 1.9))]
    table = report.markdown(rows, ["model.x"], ["vlb_bits_per_dim",
                                                "pixel_histogram_bits_per_dim"])
    assert "| loose | 1 | 3.38 † | 2.42 |" in table
    assert "| tight | 1 | 1.9 | 2.42 |" in table
    assert "† worse than an independent per-pixel histogram" in table


def test_the_report_puts_sample_counts_beside_sample_metrics(tmp_path):
    from jaxgen.cli import report
    for name, n in (("a", 500), ("b", 2000)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"seed": 0, "eval": {"num_samples": n}}))
        (run / "metrics.json").write_text(json.dumps({
            "values": {"fid": 3.0, "precision": 0.8, "recall": 0.7},
            "num_samples": n, "num_reference": 359, "config": {"eval": {"num_samples": n}}}))
    report.main([str(tmp_path)])
    table = (tmp_path / "report.md").read_text()
    assert "| eval.num_samples | seeds | num_samples | num_reference | fid | precision |" in table
    assert "| 2000 | 1 | 2000 | 359 | 3 | 0.8 |" in table


def test_the_report_tabulates_chosen_keys_with_sampling_time_and_refuses_to_merge_runs(tmp_path):
    from jaxgen.cli import report
    for name, family, decoder in (("v", "vae", "bernoulli"), ("p", "pixelcnn", None)):
        run = tmp_path / name
        run.mkdir()
        config = {"seed": 0, "family": family, "model": {"decoder": decoder, "width": 8}}
        (run / "config.json").write_text(json.dumps(config))
        (run / "metrics.json").write_text(json.dumps({
            "values": {"fid": 3.0}, "num_samples": 1000, "config": config,
            "sampling": {"seconds_per_1000": 12.5, "batch_size": 500, "batches_timed": 1}}))
    report.main([str(tmp_path), "--keys=family"])
    table = (tmp_path / "report.md").read_text()
    assert "| family | seeds | num_samples | fid | sampling_seconds_per_1000 |" in table
    assert "| pixelcnn | 1 | 1000 | 3 | 12.5 |" in table
    with pytest.raises(config_lib.ConfigError, match="differ in family; add it to --keys"):
        report.main([str(tmp_path), "--keys=model.width"])
    with pytest.raises(config_lib.ConfigError, match="'model.depth' is in no run"):
        report.main([str(tmp_path), "--keys=model.depth"])
