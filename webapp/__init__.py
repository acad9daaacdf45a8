"""The web app: ``create_app(test_config=None)`` builds it; ``socketio.run(app)`` serves it."""
from __future__ import annotations

import io
import json
import logging
import sys
import threading
from pathlib import Path

from flask import Flask, Request

from . import logs, memory, pool, routes, security, stream  # stream's handlers must be declared before any init_app
from .config import DEFAULTS, ROOT
from .extensions import socketio
from .limits import UploadGate, bound_binary_packets, harden_websockets
from .metrics import Metrics

log = logging.getLogger(__name__)


class InMemoryRequest(Request):
    """Keeps uploaded files in memory (bounded by MAX_CONTENT_LENGTH): audio never touches the disk."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config, model, HTTP routes and the /stream Socket.IO namespace."""
    memory.limit_arenas()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.request_class = InMemoryRequest
    app.json.sort_keys = False  # probabilities keep the contract's label order
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("SER")
    if test_config:
        app.config.from_mapping(test_config)
    app.config["MAX_CONTENT_LENGTH"] = int(float(app.config["MAX_UPLOAD_MB"]) * 1024 * 1024)
    # How long a thread may hold the GIL while another waits: every connection is a thread here,
    # and the inference lanes' feeder threads wait behind them.
    sys.setswitchinterval(float(app.config["GIL_SWITCH_INTERVAL_S"]))

    recognizer, model_info = load_recognizer(app.config["WEIGHTS"], app.config["INFERENCE_PRECISION"])
    if recognizer is not None:
        warm_up(recognizer, int(app.config["INFERENCE_THREADS"]))
    app.extensions["ser_model"] = {"recognizer": recognizer, **model_info}
    app.extensions["ser_metrics"] = metrics = Metrics()
    c = app.config
    app.extensions["ser_upload_gate"] = UploadGate(c["UPLOAD_CONCURRENCY"], c["UPLOAD_QUEUE"], c["UPLOAD_WAIT_S"],
                                                   c["UPLOADS_PER_CLIENT"])

    socketio.init_app(app, async_mode="threading", async_handlers=False, message_queue=c["REDIS_URL"],
                      channel="ser-socketio", ping_interval=c["PING_INTERVAL_S"], ping_timeout=c["PING_TIMEOUT_S"])
    harden_websockets(socketio.server.eio, c)
    bound_binary_packets(socketio.server)
    security.init_app(app)  # after Socket.IO: its connections see the proxied client address too
    logs.init_app(app)
    app.register_blueprint(routes.bp)
    hub = stream.init_app(app, recognizer, metrics, inference_lanes(recognizer, c))
    if recognizer is not None:
        hub.calibrate([_calibration_window()] * CALIBRATION_BATCH)
        hub.start_background()
    return app


def inference_lanes(recognizer, config) -> list | None:
    """The predictors of the live streams' inference lanes: ``INFERENCE_WORKERS`` child processes
    (``INFERENCE_MODE="process"``, started in parallel) or threads sharing ``recognizer``."""
    if recognizer is None:
        return None
    n = config["INFERENCE_WORKERS"]
    n = pool.cores() if n in ("auto", None, 0) else int(n)
    if config["INFERENCE_MODE"] == "thread":
        return [recognizer] * n
    if config["INFERENCE_MODE"] == "redis":  # the model runs in `python -m webapp.tier` workers
        from .tier import RedisPredictor

        url = config["TIER_REDIS_URL"] or config["REDIS_URL"]
        return [RedisPredictor(url, name=f"lane{i}") for i in range(n)]
    lanes: list = [None] * n

    def start(i: int):
        lanes[i] = pool.ProcessPredictor(recognizer.meta["file"], device=config["INFERENCE_DEVICE"],
                                         threads=int(config["INFERENCE_THREADS"]), name=f"lane{i}",
                                         precision=config["INFERENCE_PRECISION"])

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(lane is None for lane in lanes):
        raise RuntimeError("an inference process failed to start (see the log)")
    return lanes


CALIBRATION_BATCH = 8  # windows per batch when measuring the model's cost at start-up


def _calibration_window():
    """3 s of a voiced, modulated tone with noise: the model's full path (features + network)."""
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    return (0.2 * np.sin(2 * np.pi * 160 * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def load_recognizer(weights: str | Path, precision: str = "auto"):
    """(Recognizer or None, {"name", "file", "error"}): a missing model is reported, not fatal."""
    from ser_model.checkpoint import REGISTRY_FILE
    from ser_model.inference import Recognizer

    weights = Path(weights)
    try:
        recognizer = Recognizer.load(weights, precision=precision)
    except Exception as exc:  # no weights yet, or a broken file: serve the page, report it
        log.error("no model loaded from %s: %s", weights, exc)
        return None, {"name": None, "file": None, "error": f"no model loaded from {weights}: {exc}"}
    file = Path(recognizer.meta.get("file", weights))
    name, headline = file.stem, []
    registry = (weights if weights.is_dir() else file.parent) / REGISTRY_FILE
    if registry.exists():
        entries = json.loads(registry.read_text())
        name = entries.get("default", name) if weights.is_dir() else name
        headline = entries.get("models", {}).get(name, {}).get("headline", [])
    card = file.with_suffix(".md")
    return recognizer, {"name": name, "file": str(file), "error": None, "headline": headline,
                        "card": str(card) if card.exists() else None}


def warm_up(recognizer, threads: int):
    """Cap torch, BLAS and OpenMP thread pools, then warm the model, the file VAD and the streaming
    path (resampler, streaming VAD) before the server says it is ready.

    Pools of 2+ threads spin against each other and against other work on a small machine:
    one thread per pool made a window 2.7x faster on 2 busy cores (docs/webapp.md).
    """
    import torch

    from ser_model.streaming import warm_up_streaming

    torch.set_num_threads(threads)
    recognizer.warm_up()
    warm_up_streaming()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads)
