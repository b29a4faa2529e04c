"""Every reason an event can be refused for has a dead-letter series from the start."""

from __future__ import annotations

import ast
import inspect

from prometheus_client import REGISTRY, generate_latest

from services.common import events
from services.scorer import metrics, pipeline, recorders


def _raised_reason_kinds() -> set[str]:
    """The reason kinds in the source: the first argument of every ``InvalidEvent(...)``."""
    kinds = set()
    for module in (events, pipeline, recorders):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "InvalidEvent":
                first = node.args[0]
                text = (
                    first.value
                    if isinstance(first, ast.Constant)
                    else "".join(
                        v.value for v in getattr(first, "values", []) if isinstance(v, ast.Constant)
                    )
                )
                kinds.add(str(text).split(":")[0])
    return kinds


def test_every_reason_raised_is_a_known_reason() -> None:
    raised = _raised_reason_kinds()
    assert "invalid_json" in raised and "reused_transaction_id" in raised  # the walk works
    assert raised <= set(events.REASONS), raised - set(events.REASONS)


def test_each_known_reason_is_exported_at_zero_before_any_dead_letter() -> None:
    assert metrics.DEAD_LETTERS  # the scorer's metrics module, imported: its series exist
    text = generate_latest(REGISTRY).decode()
    for reason in events.REASONS:
        assert f'fraud_dead_letters_total{{reason="{reason}"}} 0.0' in text, reason
        label = f'fraud_label_dead_letters_total{{reason="{reason}"}} 0.0'
        assert (label in text) == (reason != "reused_transaction_id"), reason
