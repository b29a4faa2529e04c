"""The console's chart geometry against hand-computed cases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.api.console.charts import amounts_over_time, axis_label, lines_over_time, waterfall


def test_waterfall_steps_from_the_bias_to_the_margin() -> None:
    contributions = [
        {"feature": "a", "value": 1.0, "contribution": 3.0},
        {"feature": "b", "value": 2.0, "contribution": -0.5},
    ]
    chart = waterfall(-2.0, contributions, width=300.0)
    # running sums: bias -2, then -2+3 = 1, then 1-0.5 = 0.5; the total spans 0..0.5
    assert [(b.label, b.start, b.end, b.kind) for b in chart.bars] == [
        ("bias", 0.0, -2.0, "bias"),
        ("a", -2.0, 1.0, "up"),
        ("b", 1.0, 0.5, "down"),
        ("margin", 0.0, 0.5, "total"),
    ]
    # the axis runs from -2 to 1: 3 log-odds over 300 px, zero at 200 px
    assert chart.zero_x == pytest.approx(200.0)
    spans = [v for b in chart.bars for v in (b.x, b.width)]
    assert spans == pytest.approx([0.0, 200.0, 0.0, 300.0, 250.0, 50.0, 200.0, 50.0])
    assert [t for t, _ in chart.ticks] == [-2.0, -1.0, 0.0, 1.0]


def test_waterfall_sums_what_it_does_not_draw() -> None:
    contributions = [
        {"feature": f"f{i}", "value": 0.0, "contribution": c}
        for i, c in enumerate([0.8, -0.4, 0.2, 0.1, -0.05])
    ]
    chart = waterfall(0.5, contributions, rows=2)
    labels = [b.label for b in chart.bars]
    assert labels == ["bias", "f0", "f1", "3 other features", "margin"]
    rest = chart.bars[3]
    assert rest.end - rest.start == pytest.approx(0.2 + 0.1 - 0.05)
    assert chart.bars[-1].end == pytest.approx(0.5 + 0.8 - 0.4 + 0.2 + 0.1 - 0.05)


def test_amounts_over_time_places_each_decision() -> None:
    def d(t: int, amount: float) -> SimpleNamespace:
        return SimpleNamespace(
            event_time_ms=t, amount=amount, outcome="review", transaction_id=str(t), event_time=""
        )

    chart = amounts_over_time([d(1000, 50.0), d(3000, 100.0), d(2000, 0.0)], width=200, height=100)
    assert [(p.x, p.y) for p in chart.points] == [(0.0, 50.0), (200.0, 0.0), (100.0, 100.0)]
    # the time axis's ends, to the minute (1,000 and 3,000 ms after the epoch)
    assert (chart.first, chart.last) == ("1970-01-01 00:00", "1970-01-01 00:00")
    late = amounts_over_time([d(1_533_737_000_000, 1.0), d(1_533_823_400_000, 2.0)])
    assert (late.first, late.last) == ("2018-08-08 14:03", "2018-08-09 14:03")
    assert amounts_over_time([]).points == []


def test_lines_over_time_scale_to_the_largest_value_or_the_limit() -> None:
    chart = lines_over_time(
        {"a": [(100.0, 0.0), (150.0, 20.0), (200.0, 10.0)], "empty": []},
        start=100.0,
        end=200.0,
        width=200.0,
        height=100.0,
    )
    # time 100..200 over 200 px; values 0..20 over 100 px, drawn downwards
    assert [(line.name, line.points) for line in chart.lines] == [
        ("a", "0.0,100.0 100.0,0.0 200.0,50.0")
    ]
    assert (chart.top, chart.limit_y) == (20.0, None)
    above = lines_over_time(
        {"p99": [(0.0, 10.0)]}, start=0.0, end=10.0, limit=50.0, width=10.0, height=100.0
    )
    # the SLO (50) is above every value: it sets the top; the point sits at a fifth
    assert (above.top, above.limit_y, above.lines[0].points) == (50.0, 0.0, "0.0,80.0")


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0.0, "0"),
        (0.0123, "0.0123"),
        (31.0, "31"),
        (393.0, "393"),
        (4841.8, "4,842"),  # was 4.84e+03, clipped at the chart's left edge
        (9999.6, "10k"),
        (48123.0, "48k"),
        (1_234_567.0, "1.2M"),
        (123_456_789.0, "123M"),
    ],
)
def test_an_axis_label_is_a_short_plain_number(value: float, label: str) -> None:
    assert axis_label(value) == label
    assert len(label) <= 6
