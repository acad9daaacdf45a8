"""The benchmarks' own arithmetic: what bench/topology_ab.py concludes from its rounds."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import topology_ab  # noqa: E402


def rounds(topology: str, results: dict[int, bool], ms: float = 12.5, alternation: int = 0) -> list[dict]:
    return [{"alternation": alternation, "topology": topology, "streams": n, "ok": ok, "window_ms": ms}
            for n, ok in results.items()]


def test_bracket_stops_at_the_first_failure():
    # a pass above a failure is a lucky round, not capacity
    assert topology_ab.bracket(rounds("per-core", {60: True, 66: False, 72: True})) == (60, 66)
    assert topology_ab.bracket(rounds("per-core", {72: True, 60: True})) == (72, None)
    assert topology_ab.bracket(rounds("per-core", {60: False, 66: False})) == (None, 60)


def test_summary_brackets_ratio_and_efficiency(monkeypatch):
    monkeypatch.setattr(topology_ab.cb, "cores", lambda: 2)
    rows = (rounds("one-thread", {30: True, 35: False}) + rounds("per-core", {54: True, 60: False})
            + rounds("one-thread", {30: True, 35: True}, alternation=1))
    s = topology_ab.summarise(rows, 0)
    assert s["physical_limit"] == 80.0  # 2 cores x 1000 / (2 x 12.5 ms)
    # one lane serves 30-34 streams, one per core 54-59: the ratio lies in 54/34 .. 59/30
    assert s["ratio"] == [pytest.approx(54 / 34, abs=0.01), pytest.approx(59 / 30, abs=0.01)]
    assert s["efficiency"] == [pytest.approx(54 / 80, abs=1e-3), pytest.approx(59 / 80, abs=1e-3)]
    assert "ratio" not in topology_ab.summarise(rows, 1)  # no per-core rounds there: nothing to divide
