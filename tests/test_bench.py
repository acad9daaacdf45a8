"""The benchmarks' own arithmetic: what bench/topology_ab.py concludes from its rounds, how a round reads
the lanes' batches from /metrics, settings_ab's settings and listening clients, and handoff_bench's
two ways of reading."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import settings_ab  # noqa: E402
import topology_ab  # noqa: E402
from harness import LaneCounters, with_listeners  # noqa: E402


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


def test_lane_counters_read_batches_from_the_apps_metrics():
    """A round's mean batch and model ms per window, from the Prometheus text the app serves."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from webapp.metrics import Metrics

    metrics = Metrics()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = metrics.render()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        metrics.windows.inc(5)  # before the round: not counted
        metrics.inference_batch.observe(1.0)
        lanes = LaneCounters(f"http://127.0.0.1:{server.server_port}")
        for n, seconds in ((3, 0.03), (1, 0.012), (4, 0.048)):  # as InferenceWorker._observe_batch records
            metrics.windows.inc(n)
            metrics.inference_batch.observe(seconds)
            metrics.inference_cpu.inc(seconds * 0.75)  # the model waited for a core a quarter of the time
        assert lanes.since_start() == {"batches": 3, "mean_batch": 2.67, "model_ms_per_window": 11.25,
                                       "model_cpu_ms_per_window": 8.44}
    finally:
        server.shutdown()
    assert LaneCounters("http://127.0.0.1:9").since_start() is None  # nothing listening: unknown, not zero


def test_settings_ab_reads_only_ser_settings():
    assert settings_ab.settings("SER_VAD_BATCH_MS=100 SER_X=a=b") == {"SER_VAD_BATCH_MS": "100", "SER_X": "a=b"}
    assert settings_ab.settings("") == {}
    for bad in ("VAD_BATCH_MS=100", "SER_VAD_BATCH_MS"):
        with pytest.raises(Exception):
            settings_ab.settings(bad)


def test_handoff_bench_counts_cpu_per_message_in_both_modes():
    # A reader thread handing each message over costs CPU that reading in place does not.
    import handoff_bench

    inline = handoff_bench.cpu_us_per_message("inline", connections=8, rate=40, seconds=1.0)
    handoff = handoff_bench.cpu_us_per_message("handoff", connections=8, rate=40, seconds=1.0)
    assert 0 < inline < handoff < 100_000


def test_listening_clients_send_what_the_vad_calls_silence():
    """settings_ab's --listeners: the chosen clients' signals are a quiet room (no speech for the
    VAD, so their windows skip the model), the others untouched; the choice is fixed by its seed."""
    import numpy as np

    from ser_model import vad

    t = np.arange(3 * 16000) / 16000
    tone = (8000 * np.sin(2 * np.pi * 220 * t)).astype("<i2")
    signals = [tone.copy() for _ in range(10)]
    out, quiet = with_listeners(signals, 0.3)
    assert len(quiet) == 3 and quiet == with_listeners(signals, 0.3)[1]
    assert with_listeners(signals, 0.0, alternate=True)[1] == [1, 3, 5, 7, 9]
    for i, signal in enumerate(out):
        assert (signal is signals[i]) == (i not in quiet)
    room = out[quiet[0]].astype(np.float32) / 32768
    assert 20 * np.log10(np.sqrt(np.mean(room ** 2))) == pytest.approx(-60, abs=1)
    assert vad.speech_intervals(room) == []
