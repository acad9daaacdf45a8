"""Prometheus metrics of one app (``GET /metrics``), in a registry of its own.

Names follow ``ser_<thing>_<unit>``; labels take only a few fixed values (a
refusal reason, an HTTP status), never session ids or addresses.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the route

LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric the app exports; ``render()`` gives the text exposition format."""

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.streams_active = Gauge("ser_streams_active", "Live streams started and not yet stopped", registry=r)
        self.streams_started = Counter("ser_streams_started", "Live streams admitted", registry=r)
        self.streams_refused = Counter("ser_streams_refused", "Live stream starts refused, by reason",
                                       ["reason"], registry=r)
        self.streams_closed = Counter("ser_streams_closed", "Live streams ended, by how", ["how"], registry=r)
        self.windows = Counter("ser_windows_analysed", "Speech windows the model analysed", registry=r)
        self.hops_skipped = Counter("ser_hops_skipped", "Windows skipped under overload", registry=r)
        self.window_errors = Counter("ser_window_errors", "Windows whose analysis failed", registry=r)
        self.inference_lag = Histogram("ser_inference_lag_seconds",
                                       "From a window being due to its result being sent", buckets=LAG_BUCKETS,
                                       registry=r)
        self.inference_batch = Histogram("ser_inference_batch_seconds", "Time of one batched model call",
                                         buckets=SECONDS_BUCKETS, registry=r)
        self.inference_cpu = Counter("ser_inference_cpu_seconds",
                                     "CPU time of the model calls: their process, or their thread in-process "
                                     "(near 0 when a Redis tier computes)", registry=r)
        self.window_cost = Gauge("ser_window_cost_seconds",
                                 "Measured model time per window (batched), moving average", registry=r)
        self.vad_round = Histogram("ser_vad_round_seconds", "Time of one VAD batcher round (all streams with new audio)",
                                   buckets=SECONDS_BUCKETS, registry=r)
        self.vad_streams = Counter("ser_vad_streams_judged", "Streams judged by the VAD batcher, summed over rounds",
                                   registry=r)
        self.stream_capacity = Gauge("ser_stream_capacity", "Streams the inference can serve now", registry=r)
        self.uploads = Counter("ser_uploads", "Uploads answered, by HTTP status", ["status"], registry=r)
        self.decode = Histogram("ser_decode_seconds", "Time to decode one upload", buckets=SECONDS_BUCKETS,
                                registry=r)
        self.upload_analysis = Histogram("ser_upload_analysis_seconds", "Time to analyse one decoded upload",
                                         buckets=SECONDS_BUCKETS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
