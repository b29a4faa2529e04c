"""Where XGBoost trains and predicts: ``cpu`` or ``cuda``.

Needs numpy and XGBoost alone, so that ``tools.bench.device`` can use it on a machine where
the project is not installed; imports them only when asked to probe, so that ``fraud`` can
catch :class:`DeviceUnavailable` without loading XGBoost for every command.
"""

from __future__ import annotations

import shutil

DEVICES = ("auto", "cpu", "cuda")


class DeviceUnavailable(RuntimeError):
    """``cuda`` was asked for and this process cannot use it (the message says why)."""


def cuda_unavailable() -> str | None:
    """Why this process cannot train on a GPU, or None when it can.

    Checks that this XGBoost build has CUDA, that an NVIDIA driver is installed
    (``nvidia-smi`` on the PATH), and trains one round on two rows on ``cuda``: a driver
    without a usable device fails there, not later in a real training.
    """
    import numpy as np
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA"):
        return f"XGBoost {xgb.__version__} is built without CUDA"
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA driver (nvidia-smi is not on the PATH)"
    try:
        xgb.train(
            {"device": "cuda", "tree_method": "hist"},
            xgb.DMatrix(np.zeros((2, 1)), label=[0, 1]),
            num_boost_round=1,
        )
    except xgb.core.XGBoostError as error:
        return f"XGBoost could not train on cuda: {str(error).splitlines()[0]}"
    return None


def choose_training_device(flag: str | None, setting: str) -> str:
    """:func:`choose_device` for training: ``--device`` (``flag``) when given, else the
    ``FRAUD_TRAINING_DEVICE`` setting (every training without ``--device``: ``fraud train``,
    ``evaluate``, ``demo``, and the tools' model when none is active); the error names
    whichever asked.

    ``auto`` means ``cuda`` where it can be used, by the figures of ``fraud bench-device`` on
    an NVIDIA H200 (16 CPU cores beside it, XGBoost 3.2.0, three runs, 2026-12-04; README,
    "CPU against GPU"): fits 1.70 to 1.89 times faster on the GPU, and a model of the same
    quality but not the same model (test-week average precision 0.7341 against 0.7352 for the
    active candidate, 0.7196 against 0.7171 for the grid's largest). ``cpu`` reproduces the
    README's figures on any machine.

    Raises:
        ValueError, DeviceUnavailable: as :func:`choose_device`.
    """
    if flag is not None:
        return choose_device(flag)
    return choose_device(
        setting,
        asked_by="FRAUD_TRAINING_DEVICE=cuda",
        instead="FRAUD_TRAINING_DEVICE=cpu or auto trains on the CPU",
    )


def choose_device(
    preference: str = "auto",
    asked_by: str = "--device cuda",
    instead: str = "--device cpu or auto trains on the CPU",
) -> str:
    """``cuda`` when asked for and usable, or when ``auto`` and :func:`cuda_unavailable`
    finds no reason against it; else ``cpu``.

    Raises:
        ValueError: ``preference`` is not auto, cpu or cuda.
        DeviceUnavailable: ``cuda`` was asked for and cannot be used. XGBoost itself would
            warn and train on the CPU, and the model's metadata would say ``cuda``. The
            message names the setting that asked (``asked_by``) and what to do (``instead``).
    """
    if preference not in DEVICES:
        raise ValueError(f"device must be auto, cpu or cuda, not {preference!r}")
    if preference == "cpu":
        return "cpu"
    why_not = cuda_unavailable()
    if preference == "cuda" and why_not:
        raise DeviceUnavailable(f"{asked_by}: {why_not}; {instead}")
    return "cpu" if why_not else "cuda"
