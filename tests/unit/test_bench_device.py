"""``fraud bench-device``'s measuring half (:func:`tools.bench.device.measure`) on a small
synthetic export: its metrics against XGBoost and scikit-learn called directly, its inference
backends against each other, and a GPU reported as missing, with why, where there is none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.metrics import average_precision_score

import tools.bench.device as bench
from models.device import cuda_unavailable
from models.train import Candidate, booster_params
from tools.bench.device import MIN_CALLS, markdown, measure, save, time_inference

CANDIDATE = Candidate("handbook", max_depth=3, n_estimators=20, learning_rate=0.3)


def _export(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Columns in an order unlike the candidate's (so that a lost column mapping shows), and
    labels that depend on two of the candidate's inputs."""
    rng = np.random.default_rng(7)
    columns = ["unused", *reversed(CANDIDATE.features)]
    x = rng.normal(size=(4000, len(columns)))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the default branch
    a, b = columns.index(CANDIDATE.features[0]), columns.index(CANDIDATE.features[3])
    y = np.nan_to_num(x[:, a]) + 0.5 * np.nan_to_num(x[:, b]) + rng.normal(size=4000) > 1.5
    y = y.astype(int)
    train, test = slice(0, 2500), slice(2500, 4000)
    days = np.repeat(np.arange(5), 300)
    cards = rng.integers(0, 400, size=1500)
    save(
        path,
        columns,
        (x[train], y[train]),
        (x[test], y[test], days, cards),
        [
            {
                "name": "small",
                "params": booster_params(CANDIDATE, "cpu"),
                "rounds": CANDIDATE.n_estimators,
                "features": list(CANDIDATE.features),
            }
        ],
        {"split": "synthetic"},
    )
    return columns, x[train], y[train], x[test], y[test]


def test_measure_reports_xgboosts_own_metrics_and_agreeing_backends(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    columns, train_x, train_y, test_x, test_y = _export(path)
    report = measure(
        path, ("cpu", "cuda"), repeats=2, batches=(1, 7), log=lambda _: None, min_seconds=0.02
    )

    # the oracle: XGBoost and scikit-learn called directly on the candidate's columns
    order = [columns.index(f) for f in CANDIDATE.features]
    booster = xgb.train(
        booster_params(CANDIDATE, "cpu"),
        xgb.DMatrix(train_x[:, order], label=train_y, feature_names=list(CANDIDATE.features)),
        num_boost_round=CANDIDATE.n_estimators,
    )
    expected = average_precision_score(test_y, booster.inplace_predict(test_x[:, order]))
    (cpu,) = [r for r in report["training"] if r["device"] == "cpu"]
    assert cpu["average_precision"] == pytest.approx(expected, abs=1e-12)
    assert cpu["average_precision"] > 0.5  # the labels are learnable: a real model was trained
    assert cpu["rows"] == 2500
    assert len(cpu["fits_s"]) == 3 and cpu["fit_s"] == pytest.approx(np.median(cpu["fits_s"][1:]))

    why_not = cuda_unavailable()
    assert report["devices"] == {"cpu": None, "cuda": why_not}
    if why_not is not None:  # the machine has no GPU: nothing is claimed of one
        assert [r["device"] for r in report["training"]] == ["cpu"]
        assert not report["agreement"]
        assert f"cuda: not measured: {why_not}" in markdown(report)

    backends = {r["backend"] for r in report["inference"]}
    assert {"numpy trees", "xgboost cpu, 1 thread"} <= backends
    assert ("xgboost cuda" in backends) == (why_not is None)
    assert {r["batch"] for r in report["inference"]} == {1, 7}
    for row in report["inference"]:
        assert row["calls"] >= MIN_CALLS
        assert row["max_abs_difference"] <= 2.5e-7  # models.trees: one or two float32 units
        assert row["us_per_transaction"] == pytest.approx(row["median_us"] / row["batch"], 0.01)
    assert "| numpy trees |" in markdown(report)


def test_measure_refuses_unknown_devices_and_empty_repeats(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    _export(path)
    with pytest.raises(ValueError, match="devices"):
        measure(path, ("tpu",), log=lambda _: None)
    with pytest.raises(ValueError, match="repeats"):
        measure(path, ("cpu",), repeats=0, log=lambda _: None)


def test_the_measuring_half_needs_no_project_settings(tmp_path: Path) -> None:
    """On a GPU machine the project is not installed: the module must import without
    ``services`` (pydantic settings, Kafka, Redis clients)."""
    code = (
        "import sys; import tools.bench.device; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'services', 'pydantic', 'redis', 'aiokafka', 'kafka', 'feast', 'faust'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cuda_asked_for_where_there_is_none_is_an_error_not_a_cpu_model_called_cuda() -> None:
    """XGBoost trains on the CPU when told cuda without a GPU (it warns once per fit), and
    the model's metadata said ``cuda``: a user asking for cuda must hear that it is not there."""
    from models.device import DeviceUnavailable, choose_device

    assert choose_device("cpu") == "cpu"
    why_not = cuda_unavailable()
    if why_not is None:  # a machine with a GPU
        assert choose_device("cuda") == choose_device("auto") == "cuda"
        return
    assert choose_device("auto") == "cpu"
    with pytest.raises(DeviceUnavailable, match="--device cuda"):
        choose_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        choose_device("gpu")


def test_a_backend_that_raises_is_reported_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU backend failing on a lent machine must not cost the run its other figures."""
    _, train_x, train_y, test_x, _ = _export(tmp_path / "data.npz")
    booster = xgb.train(
        booster_params(CANDIDATE, "cpu"),
        xgb.DMatrix(train_x[:, :4], label=train_y),
        num_boost_round=5,
    )

    def broken(_booster: xgb.Booster, _rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("cudaErrorNoDevice\nmore lines")

    monkeypatch.setattr(bench, "predict_on_device", broken)
    rows = time_inference(booster, test_x[:, :4], ("cpu",), (1, 3), lambda _: None, 0.01)
    by_backend = {(r["backend"], r["batch"]): r for r in rows}
    assert by_backend["numpy trees", 3]["calls"] >= MIN_CALLS
    failed = [r for r in rows if "error" in r]
    assert len(failed) == 4  # both XGBoost CPU backends, at both batch sizes
    assert all(r["error"] == "RuntimeError: cudaErrorNoDevice" for r in failed)
    report = {
        "machine": {"cpu": "x", "cpu_count": 1, "gpu": None, "xgboost": xgb.__version__},
        "created": "now",
        "devices": {"cpu": None},
        "training": [],
        "agreement": [],
        "inference": rows,
    }
    assert "| xgboost cpu, 1 thread | failed: RuntimeError: cudaErrorNoDevice |" in markdown(report)


def test_the_training_device_setting_is_used_unless_device_is_given(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``FRAUD_TRAINING_DEVICE`` (also the demo's training) and ``--device``, which wins."""
    from models.device import DeviceUnavailable, choose_training_device
    from services.cli import main
    from services.common.settings import Settings

    assert choose_training_device(None, "cpu") == "cpu"
    assert choose_training_device("cpu", "cuda") == "cpu"
    monkeypatch.setenv("FRAUD_TRAINING_DEVICE", "cpu")
    assert Settings().training_device == "cpu"
    monkeypatch.setenv("FRAUD_TRAINING_DEVICE", "gpu")
    assert main(["train", "--quick"]) == 2  # a bad setting: named, nothing trained
    assert "FRAUD_TRAINING_DEVICE: Input should be" in capsys.readouterr().err
    why_not = cuda_unavailable()
    if why_not is None:  # a machine with a GPU
        assert choose_training_device(None, "cuda") == choose_training_device("auto", "cpu")
        assert choose_training_device(None, "auto") == "cuda"
        return
    assert choose_training_device(None, "auto") == "cpu"
    with pytest.raises(DeviceUnavailable, match="--device cuda"):
        choose_training_device("cuda", "cpu")
    # the setting asked: the message names it, and `fraud train` stops before reading data
    monkeypatch.setenv("FRAUD_TRAINING_DEVICE", "cuda")
    assert main(["train", "--quick"]) == 1
    err = capsys.readouterr().err
    assert f"FRAUD_TRAINING_DEVICE=cuda: {why_not}; FRAUD_TRAINING_DEVICE=cpu or auto" in err
