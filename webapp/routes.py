"""HTTP routes: the page, file upload prediction, health, metrics and vendored front-end files."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, render_template, request, send_from_directory
from werkzeug.exceptions import HTTPException, NotFound

from ser_model.audio import SAMPLE_RATE, AudioError, load_audio
from ser_model.inference import ProfileError

from .limits import LimitExceeded
from .metrics import CONTENT_TYPE_LATEST

bp = Blueprint("main", __name__)

STATUS_BY_CODE = {"not_audio": 415, "too_long": 413}  # other AudioError codes: 400
MAX_REFERENCE_S = 30.0  # a voice reference needs a few seconds; longer ones are refused (413)


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@bp.get("/")
def index():
    """The live page."""
    return render_template("index.html")


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers. Also says which model is loaded (``ok`` false without one)."""
    model, hub = current_app.extensions["ser_model"], current_app.extensions["ser_stream"]
    ok = model["recognizer"] is not None
    body = {"ok": ok, "model": model["name"], "active_streams": hub.active,
            "pending_windows": hub.pending, "error": model["error"]}
    return jsonify(body), 200 if ok else 503


@bp.get("/readyz")
def readyz():
    """Readiness: model loaded, inference thread alive, and windows not waiting too long."""
    model, hub = current_app.extensions["ser_model"], current_app.extensions["ser_stream"]
    lag = hub.lag_s
    checks = {"model_loaded": model["recognizer"] is not None, "inference_alive": hub.alive,
              "lag_ok": lag <= float(current_app.config["STALE_S"])}
    body = {"ready": all(checks.values()), **checks, "lag_s": round(lag, 3), "active_streams": hub.active,
            "stream_capacity": hub.capacity(), "pending_windows": hub.pending, "inference_lanes": len(hub.workers),
            "window_cost_ms": round((hub.window_cost_s or 0) * 1000, 2),
            "inference_precision": [getattr(w.recognizer, "precision", None) for w in hub.workers]}
    return jsonify(body), 200 if body["ready"] else 503


@bp.get("/api/model")
def model_info():
    """The loaded model: name, labels, its held-out figures (from the weights registry) and card."""
    from ser_model.labels import EMOTIONS

    model = current_app.extensions["ser_model"]
    return _json(200, {"name": model["name"], "labels": list(EMOTIONS), "headline": model.get("headline") or [],
                       "card": "/model-card" if model.get("card") else None, "error": model["error"]})


@bp.get("/model-card")
def model_card():
    """The loaded model's card (markdown, shown as text)."""
    card = current_app.extensions["ser_model"].get("card")
    if not card:
        raise NotFound()
    return Response(Path(card).read_text(encoding="utf-8"), mimetype="text/plain")


@bp.get("/api/share")
def share():
    """The links to send for this demo, best first, and whether the certificate is self-signed."""
    config = current_app.config
    urls = list(config["SHARE_URLS"]) or [request.host_url]
    return _json(200, {"urls": urls, "public_url": config["PUBLIC_URL"], "https": bool(config["HTTPS"]),
                       "self_signed": bool(config["HTTPS"]) and not config["PUBLIC_URL"]})


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    return Response(current_app.extensions["ser_metrics"].render(), mimetype=CONTENT_TYPE_LATEST)


@bp.post("/api/predict")
def predict():
    """Emotion of an uploaded file (multipart field ``file``); an optional field ``reference``
    (a few seconds of the same voice speaking calmly) adapts the answer to that voice."""
    recognizer = current_app.extensions["ser_model"]["recognizer"]
    metrics = current_app.extensions["ser_metrics"]
    if recognizer is None:
        return _error(503, current_app.extensions["ser_model"]["error"])
    config = current_app.config
    try:
        data = _uploaded_bytes()
        with current_app.extensions["ser_upload_gate"].slot(request.remote_addr or "?"):
            started = time.perf_counter()
            wave = load_audio(data, max_duration_s=float(config["MAX_DURATION_S"]),
                              min_duration_s=float(config["MIN_DURATION_S"]), allow_truncated=False)
            metrics.decode.observe(time.perf_counter() - started)
            del data
            profile = None
            reference = _uploaded_bytes("reference")
            if reference is not None:
                if not recognizer.adapts:
                    raise UploadError(400, "this model cannot adapt to a voice; send 'file' alone")
                profile = recognizer.voice_profile(load_audio(
                    reference, max_duration_s=MAX_REFERENCE_S, min_duration_s=float(config["MIN_DURATION_S"]),
                    allow_truncated=False))
                del reference
            started = time.perf_counter()
            result = recognizer.predict(wave, SAMPLE_RATE, profile)
            metrics.upload_analysis.observe(time.perf_counter() - started)
    except AudioError as exc:
        return _error(STATUS_BY_CODE.get(exc.code, 400), str(exc), code=exc.code)
    except ProfileError as exc:
        return _error(400, f"reference: {exc}", code="bad_reference")
    except UploadError as exc:
        return _error(exc.status, str(exc))
    except LimitExceeded as exc:
        return _error(exc.status, str(exc), retry_after=exc.retry_after_s)
    body = result.to_dict()
    if not np.isfinite([body["confidence"], *body["probabilities"].values()]).all():
        current_app.logger.error("non-finite prediction for a decoded upload")
        return _error(400, "the audio could not be analysed")
    return _json(200, body)


@bp.get("/vendor/<path:filename>")
def vendor(filename: str):
    """Whitelisted files of front-end npm packages, e.g. /vendor/socket.io-client/dist/socket.io.min.js."""
    parts = filename.split("/")
    n = 2 if parts[0].startswith("@") else 1
    package, rest = "/".join(parts[:n]), "/".join(parts[n:])
    prefix = current_app.config["VENDOR_PACKAGES"].get(package)
    if prefix is None or not rest.startswith(prefix) or ".." in parts \
            or not rest.endswith(tuple(current_app.config["VENDOR_EXTENSIONS"])):
        raise NotFound()
    return send_from_directory(Path(current_app.config["VENDOR_DIR"]) / package, rest, max_age=3600)


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    """JSON errors under /api/ (413 from MAX_CONTENT_LENGTH included); the usual pages elsewhere."""
    if not request.path.startswith("/api/"):
        return exc
    if exc.code == 413:
        return _error(413, f"the file is too large (at most {current_app.config['MAX_UPLOAD_MB']} MB)")
    return _error(exc.code or 500, exc.description or exc.name)


def _uploaded_bytes(field: str = "file") -> bytes | None:
    """The bytes of a multipart field: ``file`` is required, other fields (``reference``) optional."""
    try:
        files = request.files
    except OSError:  # the client stopped sending its body part-way (read timeout, closed connection)
        raise UploadError(408, "the request body did not arrive in time") from None
    if field not in files:
        if field != "file":
            return None
        raise UploadError(400, "send the audio as multipart/form-data field 'file'")
    data = files[field].read()
    if not data:
        raise UploadError(400, "the file is empty" if field == "file" else f"the {field} file is empty")
    return data


def _json(status: int, body: dict):
    if request.path.startswith("/api/"):
        current_app.extensions["ser_metrics"].uploads.labels(str(status)).inc()
    return jsonify(body), status


def _error(status: int, message: str, code: str | None = None, retry_after: int | None = None):
    response, status = _json(status, {"error": message, **({"code": code} if code else {})})
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response, status
