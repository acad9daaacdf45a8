"""Every setting of the web app, in one place.

Override with ``create_app({...})`` or environment variables prefixed ``SER_``
(``SER_WEIGHTS=/models``, ``SER_MAX_UPLOAD_MB=50``; values are parsed as JSON when they can be).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = dict(
    WEIGHTS=str(ROOT / "weights"),  # weights folder (its registry's default model) or one checkpoint
    # Uploads (POST /api/predict)
    MAX_UPLOAD_MB=25,  # larger request bodies get 413
    MAX_DURATION_S=600,  # longer decoded audio gets 413
    UPLOAD_CONCURRENCY=2,  # uploads analysed at once; the rest wait ...
    UPLOAD_WAIT_S=30,  # ... this long, then get 503
    # Live streams (Socket.IO namespace /stream)
    MAX_STREAMS=64,  # concurrent started streams; more get server_busy
    MAX_STREAM_S=3600,  # one stream's audio; longer gets stream_too_long
    STREAM_BURST_S=5.0,  # audio a client may send ahead of real time ...
    STREAM_RATE=1.5,  # ... and the sustained rate allowed (x real time); beyond: too_fast
    # Inference worker (one thread, batches windows of all streams)
    BATCH_MAX=32,  # windows per predict_proba call
    BATCH_WAIT_MS=5,  # wait this long for more windows after the first
    QUEUE_MAX=512,  # pending windows; beyond: server_busy for the sender
    COALESCE_S=0.5,  # a stream's window that waited this long is skipped when a newer one waits too
    STALE_S=2.0,  # windows waiting longer are never analysed (load shedding)
    INFERENCE_THREADS=1,  # torch/BLAS/OpenMP threads: 1 is fastest on a busy 2-core machine (docs/webapp.md)
    # Front-end libraries served from node_modules under /vendor/<package>/<path>
    VENDOR_DIR=str(ROOT / "node_modules"),
    VENDOR_PACKAGES={"socket.io-client": "dist/", "chart.js": "dist/", "@kurkle/color": "dist/"},
    VENDOR_EXTENSIONS=(".js", ".mjs", ".css", ".map"),
)
