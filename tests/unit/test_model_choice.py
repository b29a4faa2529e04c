"""The one-standard-error rule of model selection, on hand-computed cases."""

from __future__ import annotations

from typing import Any

from models.train import Candidate, choose, grid

FEATURE_SET = "handbook"


def _entry(depth: int, trees: int, folds: list[float]) -> dict[str, Any]:
    return {
        "candidate": Candidate(FEATURE_SET, depth, trees, 0.05),
        "validation": {"average_precision": sum(folds) / len(folds)},
        "folds": [{"average_precision": f} for f in folds],
    }


def _ranked(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda r: -r["validation"]["average_precision"])


def test_the_smallest_model_within_one_standard_error_wins() -> None:
    # best: folds 0.70, 0.72, 0.74, 0.76: mean 0.73, sample sd 0.02582, SE 0.01291: bar 0.71709
    best = _entry(6, 100, [0.70, 0.72, 0.74, 0.76])  # 6,400 leaves
    close = _entry(4, 100, [0.71, 0.72, 0.72, 0.73])  # mean 0.72, 1,600 leaves
    smaller_but_worse = _entry(3, 100, [0.70, 0.71, 0.72, 0.72])  # mean 0.7125 < bar
    assert choose(_ranked(best, close, smaller_but_worse)) is close


def test_equal_sizes_go_to_the_higher_average_precision() -> None:
    best = _entry(6, 100, [0.70, 0.72, 0.74, 0.76])
    deep = _entry(4, 100, [0.72, 0.72, 0.72, 0.72])  # 1,600 leaves, mean 0.72
    long = _entry(3, 200, [0.71, 0.72, 0.72, 0.73])  # 1,600 leaves, mean 0.72
    wider = _entry(3, 200, [0.72, 0.72, 0.73, 0.73])  # 1,600 leaves, mean 0.725
    assert choose(_ranked(best, deep, long, wider)) is wider


def test_without_spread_the_best_is_taken() -> None:
    best = _entry(6, 100, [0.73, 0.73, 0.73, 0.73])
    assert choose(_ranked(best, _entry(3, 100, [0.729] * 4))) is best


def test_the_quick_grid_is_part_of_the_full_grid() -> None:
    assert set(grid(quick=True)) <= set(grid())
    assert len(grid()) == 108 and len(grid(quick=True)) == 12


def test_a_fold_without_a_score_leaves_the_best() -> None:
    best = _entry(6, 100, [0.73, float("nan"), 0.74, 0.75])
    best["validation"]["average_precision"] = 0.74
    assert choose(_ranked(best, _entry(3, 100, [0.739] * 4))) is best
