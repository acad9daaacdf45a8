"""HTTP routes: the page, file upload prediction, health check and vendored front-end files."""
from __future__ import annotations

import io
import threading
from pathlib import Path

from flask import Blueprint, current_app, jsonify, render_template, request, send_from_directory
from werkzeug.exceptions import HTTPException, NotFound

from ser_model.audio import SAMPLE_RATE, AudioError, load_audio

bp = Blueprint("main", __name__)

STATUS_BY_CODE = {"not_audio": 415}  # other AudioError codes: 400


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
    """Liveness and model status."""
    model, hub = current_app.extensions["ser_model"], current_app.extensions["ser_stream"]
    ok = model["recognizer"] is not None
    body = {"ok": ok, "model": model["name"], "active_streams": hub.active,
            "pending_windows": hub.worker.pending, "error": model["error"]}
    return jsonify(body), 200 if ok else 503


@bp.post("/api/predict")
def predict():
    """Emotion of an uploaded file (multipart field ``file``)."""
    recognizer = current_app.extensions["ser_model"]["recognizer"]
    if recognizer is None:
        return _error(503, current_app.extensions["ser_model"]["error"])
    try:
        data = _uploaded_bytes()
        _check_declared_duration(data)
        slots: threading.BoundedSemaphore = current_app.extensions["ser_upload_slots"]
        if not slots.acquire(timeout=current_app.config["UPLOAD_WAIT_S"]):
            return _error(503, "the server is busy; try again shortly")
        try:
            wave = load_audio(data)
            _check_duration(len(wave) / SAMPLE_RATE)
            result = recognizer.predict(wave, SAMPLE_RATE)
        finally:
            slots.release()
    except AudioError as exc:
        return _error(STATUS_BY_CODE.get(exc.code, 400), str(exc))
    except UploadError as exc:
        return _error(exc.status, str(exc))
    return jsonify(result.to_dict())


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


def _uploaded_bytes() -> bytes:
    if "file" not in request.files:
        raise UploadError(400, "send the audio as multipart/form-data field 'file'")
    data = request.files["file"].read()
    if not data:
        raise UploadError(400, "the file is empty")
    return data


def _check_declared_duration(data: bytes):
    """Refuse over-long audio from its header before decoding it, when libsndfile can tell."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # not readable by libsndfile: checked after decoding instead
        return
    if info.samplerate > 0 and info.frames > 0:
        _check_duration(info.frames / info.samplerate)


def _check_duration(seconds: float):
    limit = float(current_app.config["MAX_DURATION_S"])
    if seconds > limit:
        raise UploadError(413, f"the audio is {seconds:.0f} s long; at most {limit:g} s is accepted")


def _error(status: int, message: str):
    return jsonify({"error": message}), status
