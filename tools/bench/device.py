"""CPU against GPU for the fraud model (``fraud bench-device``): XGBoost's training time and the
test week's metrics on each device, and what scoring a micro-batch of 1 to 1,000 transactions
costs each way the scorer could score it.

Two halves, so that the measuring half runs on a machine where the project is not installed (a
GPU machine with numpy, pandas, scikit-learn and XGBoost, and this repository on PYTHONPATH):

- :func:`export` (needs the project and the handbook data): the chapter 3 split's training and
  test weeks with every model input, read through Feast as ``fraud train`` reads them, and each
  candidate's XGBoost parameters (:func:`models.train.booster_params`), in one ``.npz``;
- :func:`measure` (``python -m tools.bench.device DATA.npz``): trains every candidate on every
  device and times inference. Imports numpy, pandas, scikit-learn, XGBoost and
  :mod:`models.device`, :mod:`models.metrics`, :mod:`models.trees` alone.

Training: each fit is timed from the DMatrix's construction to the booster's return. The first
fit on a device is reported apart (the CUDA context is created before it, by the probe of
:func:`models.device.cuda_unavailable`), the others by their median. Candidates: the active
model's (else the quick grid's smallest) and the full grid's largest (depth 6, 400 trees),
where a GPU has the most to gain. Metrics: the handbook's
(:func:`models.metrics.performance`) on the test week.

Inference: the first candidate's booster trained on CPU; rows from the test week in
micro-batches of 1, 10, 100 and 1,000, each call timed alone (``perf_counter_ns``) after three
warm-up calls, the median over at least 20 calls and 1 s (at most 2,000 calls). Backends:

- ``numpy trees``: :class:`models.trees.TreeEnsemble`, what the scorer uses;
- ``xgboost cpu, 1 thread``: ``Booster.inplace_predict`` on host rows with one thread, as the
  scorer sets it when a model cannot be compiled; ``xgboost cpu, N threads`` with every core;
- ``xgboost cuda``: the booster on ``cuda`` given host rows, as the scorer holds them (XGBoost
  copies them to the GPU and the scores back);
- ``xgboost cuda, rows on the GPU``: the same given CuPy arrays (copied to the GPU outside the
  timing, the scores copied back inside), when CuPy is installed: the floor of a GPU scorer.

Every backend's scores are compared with the numpy trees' on every block it is timed on (the
largest absolute difference is in the report); a backend that raises there is reported as
failed and the others still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from models.device import cuda_unavailable
from models.inference import predict_on_device
from models.metrics import performance
from models.trees import TreeEnsemble

if TYPE_CHECKING:
    from services.common.settings import Settings

BATCHES = (1, 10, 100, 1000)
DEVICES = ("cpu", "cuda")
MIN_CALLS = 20
MIN_SECONDS = 1.0
MAX_CALLS = 2000
WARM_UP_CALLS = 3

Log = Callable[[str], None]
Matrix = npt.NDArray[np.float64]


def save(
    path: Path,
    columns: Sequence[str],
    train: tuple[Matrix, npt.NDArray[np.integer]],
    test: tuple[Matrix, npt.NDArray[np.integer], npt.NDArray[np.integer], npt.NDArray[np.integer]],
    candidates: Sequence[dict[str, Any]],
    about: dict[str, Any],
) -> None:
    """Write what :func:`measure` reads.

    Args:
        columns: the names of the feature matrices' columns.
        train: features (n, len(columns)) and 0/1 labels (n,).
        test: features (m, len(columns)), 0/1 labels, day numbers and card ids, each (m,).
        candidates: ``{"name", "params" (XGBoost's), "rounds", "features" (names, in the
            booster's order, each one of ``columns``)}``.
        about: where the data came from (split, rows, fingerprint), copied into the report.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        columns=np.asarray(list(columns), dtype=str),
        train_x=np.asarray(train[0], dtype=np.float64),
        train_y=np.asarray(train[1], dtype=np.int8),
        test_x=np.asarray(test[0], dtype=np.float64),
        test_y=np.asarray(test[1], dtype=np.int8),
        test_days=np.asarray(test[2], dtype=np.int64),
        test_cards=np.asarray(test[3], dtype=np.int64),
        candidates=np.asarray(json.dumps(list(candidates))),
        about=np.asarray(json.dumps(about)),
    )


def export(settings: Settings, path: Path, log: Log = print) -> dict[str, Any]:
    """The chapter 3 split (train 2018-07-25..07-31, test 08-08..08-14, cards known compromised
    removed from the test week) with every model input, to ``path`` (:func:`save`'s format).

    Returns:
        the ``about`` written.

    Raises:
        services.common.handbook.DataError: the handbook data is missing.
    """
    from models.datasets import FeatureFrames
    from models.protocol import chapter3_split, split_indices
    from models.registry import ModelRegistry
    from models.train import Candidate, booster_params, grid
    from services.features import definitions as d

    registry = ModelRegistry(settings.models_dir)
    active = registry.active()
    if active is not None:
        first = Candidate(**registry.metadata(active)["params"])
        first_name = f"active model {active}"
    else:
        first = min(grid(quick=True), key=lambda c: (c.leaves, len(c.features)))
        first_name = "the quick grid's smallest"
    largest = max(grid(), key=lambda c: (c.leaves, len(c.features)))
    split = chapter3_split()
    log(f"reading the chapter 3 split ({split.as_dict()}) through Feast")
    frames = FeatureFrames(settings)
    frame = frames.between(split.training_start, split.assessment_end)
    train_pos, test_pos = split_indices(frame, split)
    columns = list(d.ALL_FEATURES)
    train, test = frame.iloc[train_pos], frame.iloc[test_pos]
    candidates = [
        {
            "name": name,
            "candidate": {
                "feature_set": c.feature_set,
                "max_depth": c.max_depth,
                "n_estimators": c.n_estimators,
                "learning_rate": c.learning_rate,
            },
            "params": booster_params(c, "cpu"),
            "rounds": c.n_estimators,
            "features": list(c.features),
        }
        for name, c in ((first_name, first), ("the full grid's largest", largest))
    ]
    about = {
        "split": split.as_dict(),
        "training_rows": len(train),
        "test_rows": len(test),
        "data_fingerprint": frames.data_fingerprint,
        "exported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    save(
        path,
        columns,
        (train[columns].to_numpy(), train["TX_FRAUD"].to_numpy()),
        (
            test[columns].to_numpy(),
            test["TX_FRAUD"].to_numpy(),
            test["TX_TIME_DAYS"].to_numpy(),
            test["CUSTOMER_ID"].to_numpy(),
        ),
        candidates,
        about,
    )
    log(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return about


def machine() -> dict[str, Any]:
    """CPU model and count, GPU name and driver (None without one), library versions (and the
    CUDA version XGBoost was built with, None without CUDA)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    gpu = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
        gpu = done.stdout.strip() or None
    try:
        import cupy

        cupy_version: str | None = cupy.__version__
    except ImportError:
        cupy_version = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "xgboost": xgb.__version__,
        "xgboost_cuda": xgb.build_info().get("CUDA_VERSION"),  # the CUDA it was built with
        "numpy": np.__version__,
        "cupy": cupy_version,
    }


def measure(
    path: Path,
    devices: Sequence[str] = DEVICES,
    repeats: int = 3,
    batches: Sequence[int] = BATCHES,
    log: Log = print,
    min_seconds: float = MIN_SECONDS,
) -> dict[str, Any]:
    """Train every candidate of ``path`` on every device and time inference (module docstring).

    Args:
        path: :func:`save`'s file.
        devices: of ``cpu`` and ``cuda``; one this process cannot use is reported with why.
        repeats: timed fits after the first, per candidate and device (at least 1).
        min_seconds: each backend and batch size is timed at least this long.

    Returns:
        ``{"machine", "data", "devices": {device: None or why not}, "training": [{"candidate",
        "device", "rows", "first_fit_s", "fit_s" (median of the others), "fits_s",
        "auc_roc", "average_precision", "card_precision_at_100"}], "agreement": [{"candidate",
        "max_abs_score_difference" (cpu against cuda on the test week)}], "inference":
        [{"backend", "batch", "calls", "median_us", "us_per_transaction",
        "max_abs_difference"} or, for a backend that raised before its timing, {"backend",
        "batch", "error"}], "created"}``.

    Raises:
        ValueError: an unknown device, ``repeats`` < 1 or a batch < 1.
    """
    unknown = [d for d in devices if d not in DEVICES]
    if unknown or repeats < 1 or not batches or min(batches) < 1:
        raise ValueError(
            f"devices must be of {DEVICES} (got {list(devices)}), repeats >= 1 (got {repeats}),"
            f" batches >= 1 (got {list(batches)})"
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    columns = [str(c) for c in arrays["columns"]]
    candidates: list[dict[str, Any]] = json.loads(str(arrays["candidates"]))
    why_not = {d: (cuda_unavailable() if d == "cuda" else None) for d in devices}
    usable = [d for d in devices if why_not[d] is None]
    for device, reason in why_not.items():
        if reason:
            log(f"{device}: not measured: {reason}")

    training: list[dict[str, Any]] = []
    agreement: list[dict[str, Any]] = []
    boosters: dict[str, dict[str, xgb.Booster]] = {}
    for spec in candidates:
        index = [columns.index(f) for f in spec["features"]]
        train_x, test_x = arrays["train_x"][:, index], arrays["test_x"][:, index]
        scores = {}
        for device in usable:
            params = {**spec["params"], "device": device}
            fits, booster = [], None
            for _ in range(repeats + 1):
                began = time.perf_counter()
                matrix = xgb.DMatrix(train_x, arrays["train_y"], feature_names=spec["features"])
                booster = xgb.train(params, matrix, num_boost_round=spec["rounds"])
                fits.append(time.perf_counter() - began)
            assert booster is not None
            scores[device] = predict_on_device(booster, test_x)
            metrics = performance(
                arrays["test_days"], arrays["test_cards"], arrays["test_y"], scores[device]
            )
            row = {
                "candidate": spec["name"],
                "params": spec.get("candidate", {}),
                "device": device,
                "rows": int(train_x.shape[0]),
                "first_fit_s": fits[0],
                "fit_s": statistics.median(fits[1:]),
                "fits_s": fits,
                **metrics,
            }
            log(
                f"{spec['name']} on {device}: fit {row['fit_s']:.2f} s (first "
                f"{row['first_fit_s']:.2f} s), average precision {metrics['average_precision']:.4f}"
            )
            training.append(row)
            boosters.setdefault(spec["name"], {})[device] = booster
        if len(scores) == 2:
            gap = float(np.max(np.abs(scores["cpu"] - scores["cuda"])))
            agreement.append({"candidate": spec["name"], "max_abs_score_difference": gap})
    inference: list[dict[str, Any]] = []
    first = candidates[0]
    if "cpu" in usable:
        rows = arrays["test_x"][:, [columns.index(f) for f in first["features"]]]
        booster = boosters[first["name"]]["cpu"]
        inference = time_inference(booster, rows, usable, batches, log, min_seconds)
    return {
        "machine": machine(),
        "data": json.loads(str(arrays["about"])),
        "devices": why_not,
        "repeats": repeats,
        "training": training,
        "agreement": agreement,
        "inference": inference,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def time_inference(
    booster: xgb.Booster,
    rows: Matrix,
    devices: Sequence[str],
    batches: Sequence[int] = BATCHES,
    log: Log = print,
    min_seconds: float = MIN_SECONDS,
) -> list[dict[str, Any]]:
    """Median microseconds per call of each backend at each batch size (module docstring).

    Args:
        booster: trained on CPU.
        rows: shape (n, the booster's features), n >= the largest batch.
        devices: ``cuda`` among them adds the GPU backends.
    """
    ensemble = TreeEnsemble.from_booster(booster)
    one_thread = booster.copy()
    one_thread.set_param({"nthread": 1})  # as the scorer sets it (services/scorer/model.py)
    every_core = booster.copy()
    every_core.set_param({"nthread": 0})
    backends: list[tuple[str, Callable[[Any], Any], Callable[[Matrix], Any]]] = [
        ("numpy trees", ensemble.predict, _same),
        ("xgboost cpu, 1 thread", lambda r: predict_on_device(one_thread, r), _same),
        (
            f"xgboost cpu, {os.cpu_count()} threads",
            lambda r: predict_on_device(every_core, r),
            _same,
        ),
    ]
    if "cuda" in devices:
        on_gpu = booster.copy()
        on_gpu.set_param({"device": "cuda"})
        backends.append(("xgboost cuda", lambda r: predict_on_device(on_gpu, r), _same))
        try:
            import cupy
        except ImportError:
            log("CuPy is not installed: no timing with rows already on the GPU")
        else:
            backends.append(
                (
                    "xgboost cuda, rows on the GPU",
                    lambda r: cupy.asnumpy(on_gpu.inplace_predict(r)),
                    cupy.asarray,
                )
            )
    results = []
    for batch in batches:
        blocks = _blocks(rows, batch)
        references = [ensemble.predict(b) for b in blocks]
        for name, score, place in backends:
            try:
                placed = [place(b) for b in blocks]
                difference = max(  # on every block timed
                    float(np.max(np.abs(np.asarray(score(b)) - r)))
                    for b, r in zip(placed, references, strict=True)
                )
            except Exception as error:  # reported; the other backends still run
                why = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                results.append({"backend": name, "batch": batch, "error": why})
                log(f"{name:<30} batch {batch:>5}: failed: {why}")
                continue
            for block in placed[:WARM_UP_CALLS]:
                score(block)
            timings: list[int] = []
            began = time.perf_counter()
            while len(timings) < MAX_CALLS and (
                len(timings) < MIN_CALLS or time.perf_counter() - began < min_seconds
            ):
                block = placed[len(timings) % len(placed)]
                start = time.perf_counter_ns()
                score(block)
                timings.append(time.perf_counter_ns() - start)
            median_us = statistics.median(timings) / 1000
            results.append(
                {
                    "backend": name,
                    "batch": batch,
                    "calls": len(timings),
                    "median_us": round(median_us, 1),
                    "us_per_transaction": round(median_us / batch, 2),
                    "max_abs_difference": difference,
                }
            )
            log(f"{name:<30} batch {batch:>5}: {median_us:>10.1f} µs a call")
    return results


def _same(block: Matrix) -> Matrix:
    return block


def _blocks(rows: Matrix, batch: int, count: int = 16) -> list[Matrix]:
    """``count`` different contiguous blocks of ``batch`` rows (C-contiguous copies)."""
    if rows.shape[0] < batch:
        raise ValueError(f"{rows.shape[0]} rows cannot make a batch of {batch}")
    starts = np.linspace(0, rows.shape[0] - batch, num=count).astype(int)
    return [np.ascontiguousarray(rows[s : s + batch]) for s in starts]


def markdown(report: dict[str, Any]) -> str:
    """Training and inference tables of :func:`measure`'s report."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['cpu_count']} CPUs), GPU: {m['gpu'] or 'none'}; "
        f"XGBoost {m['xgboost']}; {report['created']}",
        "",
    ]
    for device, reason in report["devices"].items():
        if reason:
            lines.append(f"- {device}: not measured: {reason}")
    lines += [
        "",
        "| candidate | device | rows | fit (median) | first fit | average precision | AUC ROC"
        " | card precision@100 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["training"]:
        lines.append(
            f"| {r['candidate']} | {r['device']} | {r['rows']:,} | {r['fit_s']:.2f} s"
            f" | {r['first_fit_s']:.2f} s | {r['average_precision']:.4f} | {r['auc_roc']:.4f}"
            f" | {r['card_precision_at_100']:.4f} |"
        )
    for a in report["agreement"]:
        lines.append(
            f"\n{a['candidate']}: largest score difference cpu against cuda "
            f"{a['max_abs_score_difference']:.2e}"
        )
    backends = list(dict.fromkeys(r["backend"] for r in report["inference"]))
    batches = list(dict.fromkeys(r["batch"] for r in report["inference"]))
    if backends:
        lines += [
            "",
            "Inference, median µs a call (µs a transaction):",
            "",
            "| backend | " + " | ".join(f"batch {b:,}" for b in batches) + " |",
            "|---|" + "---|" * len(batches),
        ]
        cell = {(r["backend"], r["batch"]): r for r in report["inference"]}
        for name in backends:
            cells = [cell[name, b] for b in batches]
            times = [
                f"{c['median_us']:,.1f} ({c['us_per_transaction']:,.2f})"
                if "error" not in c
                else f"failed: {c['error']}"
                for c in cells
            ]
            lines.append(f"| {name} | " + " | ".join(times) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.bench.device DATA.npz``: :func:`measure` where the project is not
    installed; prints the Markdown tables, writes the JSON report to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench.device", description=__doc__)
    parser.add_argument("data", type=Path, help="the file `fraud bench-device --export` wrote")
    parser.add_argument("--out", type=Path, default=Path("device.json"), help="JSON report")
    parser.add_argument("--devices", default=",".join(DEVICES), help="comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits after the first")
    args = parser.parse_args(argv)
    report = measure(args.data, tuple(args.devices.split(",")), args.repeats)
    args.out.write_text(json.dumps(report, indent=2))
    print("\n" + markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
