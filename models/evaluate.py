"""Evaluation of a registered model with the handbook's protocol, beside the published table.

Chapter 3: the model's booster scores the test week 2018-08-08..08-14 if it was trained on the
chapter 3 training week; otherwise a booster with its hyperparameters and features is trained
on that week first. Chapter 5: for each of the four rolling test weeks (starting 2018-08-08,
08-15, 08-22, 08-29) a booster with the model's hyperparameters and features is trained on the
week that ends 7 days before it, as the handbook's prequential test does. Features come from
Feast's point-in-time retrieval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import published
from models.ceiling import oracle_scores, revealed_frauds
from models.device import choose_training_device
from models.inference import predict
from models.metrics import card_precision_at_k, performance
from models.protocol import chapter3_split, chapter5_test_splits, split_indices
from models.registry import LoadedModel, ModelRegistry, RegistryError
from models.train import Candidate, assess
from services.common.settings import Settings


def evaluate(
    settings: Settings,
    version: str | None = None,
    device_preference: str | None = None,
    chapter5: bool = True,
) -> dict[str, Any]:
    """Chapter 3 and chapter 5 metrics of ``version`` (default: the active model), its
    candidate retrained on ``device_preference`` (auto, cpu or cuda), else on
    ``settings.training_device``.

    Returns:
        ``{"model_version", "chapter3": {auc_roc, average_precision, card_precision_at_100,
        test_week, transactions, frauds, booster}, "chapter5": {the three means,
        "card_precision_at_100_bound" (:mod:`models.ceiling`'s oracle), "weeks": [...]},
        "published": {...}, "before": {"name", "chapter3", "chapter5"} (ours of 2026-12-02),
        "plots": [...]}``; without ``chapter5`` that part is omitted.

    Raises:
        RegistryError: no such model, or none is active.
    """
    from models.datasets import FeatureFrames

    registry = ModelRegistry(settings.models_dir)
    version = version or registry.active()
    if version is None:
        raise RegistryError("no active model: run `fraud train` first")
    model = registry.load(version)
    candidate = Candidate(**model.metadata["params"])
    device = choose_training_device(device_preference, settings.training_device)
    splits = chapter5_test_splits() if chapter5 else chapter5_test_splits()[:1]
    frames = FeatureFrames(settings)
    frame = frames.between(splits[0].training_start, splits[-1].assessment_end)

    chapter3, scored = _chapter3(frame, model, candidate, device)
    plots = write_plots(scored, settings.reports_dir, version)
    report: dict[str, Any] = {
        "model_version": version,
        "feature_set": candidate.feature_set,
        "chapter3": chapter3,
        "published": {"chapter3": published.CHAPTER3, "chapter5": published.CHAPTER5},
        "before": {"name": published.OURS_BEFORE_NAME, **published.OURS_BEFORE},
        "plots": [str(p) for p in plots],
    }
    if not chapter5:
        return report
    revealed = pd.Series(
        revealed_frauds(frames.transactions), index=frames.transactions["TRANSACTION_ID"]
    )
    weeks: list[dict[str, Any]] = []
    for split in splits:
        metrics, test = assess(frame, split, candidate, device)
        oracle = oracle_scores(
            test["score"].to_numpy(), revealed.reindex(test["TRANSACTION_ID"]).to_numpy()
        )
        bound, _ = card_precision_at_k(
            test["TX_TIME_DAYS"], test["CUSTOMER_ID"], test["TX_FRAUD"], oracle
        )
        weeks.append(
            {
                **split.as_dict(),
                **metrics,
                "card_precision_at_100_bound": bound,
                "transactions": len(test),
                "frauds": int(test["TX_FRAUD"].sum()),
            }
        )
    means: dict[str, Any] = {
        m: float(np.mean([float(w[m]) for w in weeks])) for m in published.METRICS
    }
    means["card_precision_at_100_bound"] = float(
        np.mean([w["card_precision_at_100_bound"] for w in weeks])
    )
    means["std"] = {m: float(np.std([float(w[m]) for w in weeks])) for m in published.METRICS}
    report["chapter5"] = {**means, "weeks": weeks}
    return report


def _chapter3(
    frame: pd.DataFrame, model: LoadedModel, candidate: Candidate, device: str
) -> tuple[dict[str, Any], pd.DataFrame]:
    split = chapter3_split()
    window = model.metadata.get("training_window", {})
    if window.get("start") == split.training_start.isoformat():
        _, test_pos = split_indices(frame, split)
        test = frame.iloc[test_pos].copy()
        test["score"] = predict(model.booster, test[model.feature_names].to_numpy())
        metrics = performance(
            test["TX_TIME_DAYS"], test["CUSTOMER_ID"], test["TX_FRAUD"], test["score"]
        )
        booster = f"registered {model.version}"
    else:
        metrics, test = assess(frame, split, candidate, device)
        booster = f"retrained on {split.as_dict()['training']} with {model.version}'s settings"
    return {
        **metrics,
        "test_week": split.as_dict()["test"],
        "transactions": len(test),
        "frauds": int(test["TX_FRAUD"].sum()),
        "booster": booster,
    }, test


def write_plots(scored: pd.DataFrame, folder: Path, version: str) -> list[Path]:
    """Precision-recall curve and score distribution of the chapter 3 test week, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    folder.mkdir(parents=True, exist_ok=True)
    labels, scores = scored["TX_FRAUD"].to_numpy(), scored["score"].to_numpy()
    precision, recall, _ = precision_recall_curve(labels, scores)
    pr_path = folder / f"precision_recall_{version}.png"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(recall, precision, lw=1.5, label=f"model {version}")
    ax.axhline(labels.mean(), color="grey", ls="--", lw=1, label="fraud rate (no skill)")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="Precision-recall, test week 2018-08-08..08-14",
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(pr_path, dpi=110)
    plt.close(fig)

    dist_path = folder / f"score_distribution_{version}.png"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = [i / 50 for i in range(51)]
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="genuine", log=True)
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="fraud", log=True)
    ax.set(
        xlabel="score (fraud probability)",
        ylabel="transactions (log scale)",
        title="Score distribution, test week 2018-08-08..08-14",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(dist_path, dpi=110)
    plt.close(fig)
    return [pr_path, dist_path]


def format_report(report: dict[str, Any]) -> str:
    """The report as a text table beside the published numbers."""
    ch3, ch5 = report["chapter3"], report["chapter5"]
    lines = [
        f"model {report['model_version']} ({report['feature_set']})",
        "",
        f"chapter 3, test week {ch3['test_week']} ({ch3['transactions']} transactions, "
        f"{ch3['frauds']} frauds; booster: {ch3['booster']})",
        f"  {'':34} {'AUC ROC':>8} {'AP':>8} {'CP@100':>8}",
        _row("this model", ch3),
    ]
    lines += [_row(f"book: {name}", row) for name, row in published.CHAPTER3.items()]
    lines += [_row(published.OURS_BEFORE_NAME, published.OURS_BEFORE["chapter3"])]
    header = f"  {'':34} {'AUC ROC':>8} {'AP':>8} {'CP@100':>8}"
    lines += ["", "chapter 5, mean over 4 rolling test weeks (retrained per week)", header]
    lines += [_row("this model", ch5)]
    lines += [_row(f"book: {name}", row) for name, row in published.CHAPTER5.items()]
    lines += [_row(published.OURS_BEFORE_NAME, published.OURS_BEFORE["chapter5"])]
    lines += [_row(f"  week {w['test']}", w) for w in ch5["weeks"]]
    weekly = ", ".join(f"{w['card_precision_at_100_bound']:.3f}" for w in ch5["weeks"])
    lines += [
        f"  {'bound: revealed frauds first':<34} {'':8} {'':8} "
        f"{ch5['card_precision_at_100_bound']:8.3f}   (weeks {weekly})",
        "  (this model's ranking with every fraud that its amount or a terminal label already",
        "  received reveals moved first, models/ceiling.py; the rest wait for their labels)",
    ]
    lines += ["", "plots: " + ", ".join(report["plots"])]
    return "\n".join(lines)


def _row(name: str, row: dict[str, Any]) -> str:
    return (
        f"  {name:<34} {row['auc_roc']:8.3f} {row['average_precision']:8.3f} "
        f"{row['card_precision_at_100']:8.3f}"
    )


__all__ = ["evaluate", "format_report"]
