"""The web app: ``create_app(test_config=None)`` builds it; ``socketio.run(app)`` serves it."""
from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

from flask import Flask, Request

from . import routes, stream  # stream's handlers must be declared before any init_app
from .config import DEFAULTS, ROOT
from .extensions import socketio

log = logging.getLogger(__name__)


class InMemoryRequest(Request):
    """Keeps uploaded files in memory (bounded by MAX_CONTENT_LENGTH): audio never touches the disk."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config, model, HTTP routes and the /stream Socket.IO namespace."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.request_class = InMemoryRequest
    app.json.sort_keys = False  # probabilities keep the contract's label order
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("SER")
    if test_config:
        app.config.from_mapping(test_config)
    app.config["MAX_CONTENT_LENGTH"] = int(float(app.config["MAX_UPLOAD_MB"]) * 1024 * 1024)

    recognizer, model_info = load_recognizer(app.config["WEIGHTS"])
    if recognizer is not None:
        warm_up(recognizer, int(app.config["INFERENCE_THREADS"]))
    app.extensions["ser_model"] = {"recognizer": recognizer, **model_info}
    app.extensions["ser_upload_slots"] = threading.BoundedSemaphore(int(app.config["UPLOAD_CONCURRENCY"]))

    socketio.init_app(app, async_mode="threading", async_handlers=False)
    app.register_blueprint(routes.bp)
    stream.init_app(app, recognizer)
    return app


def load_recognizer(weights: str | Path):
    """(Recognizer or None, {"name", "file", "error"}): a missing model is reported, not fatal."""
    from ser_model.checkpoint import REGISTRY_FILE
    from ser_model.inference import Recognizer

    weights = Path(weights)
    try:
        recognizer = Recognizer.load(weights)
    except Exception as exc:  # no weights yet, or a broken file: serve the page, report it
        log.error("no model loaded from %s: %s", weights, exc)
        return None, {"name": None, "file": None, "error": f"no model loaded from {weights}: {exc}"}
    name = Path(recognizer.meta.get("file", weights)).stem
    if weights.is_dir():
        name = json.loads((weights / REGISTRY_FILE).read_text()).get("default", name)
    return recognizer, {"name": name, "file": recognizer.meta.get("file"), "error": None}


def warm_up(recognizer, threads: int):
    """Run the model once (lazy imports, caches), then cap torch, BLAS and OpenMP thread pools.

    Pools of 2+ threads spin against each other and against other work on a small machine:
    one thread per pool made a window 2.7x faster on 2 busy cores (docs/webapp.md).
    """
    import numpy as np
    import torch

    recognizer.predict_proba([np.zeros(16000, dtype=np.float32)])
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads)
