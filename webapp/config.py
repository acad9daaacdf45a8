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
    MAX_DURATION_S=600,  # longer audio gets 413, found while decoding (decoding stops there)
    MIN_DURATION_S=0.25,  # shorter audio gets 400: too short to carry an emotion
    UPLOAD_CONCURRENCY=1,  # uploads decoded and analysed at once (the other core serves live streams) ...
    UPLOAD_QUEUE=4,  # ... uploads waiting for a turn; more get 503 + Retry-After at once ...
    UPLOAD_WAIT_S=10,  # ... and a waiting upload gets 503 + Retry-After after this long
    UPLOADS_PER_CLIENT=1,  # uploads in flight (waiting or running) per client address; more get 429
    # Live streams (Socket.IO namespace /stream)
    MAX_STREAMS=64,  # hard cap on started streams; admission usually refuses earlier (below)
    ADMIT_UTILISATION=0.75,  # admit while speech from every stream would keep the model this busy ...
    ADMIT_MAX_LAG_S=0.25,  # ... and while windows wait less than this for the model
    STREAMS_PER_CLIENT=4,  # started streams per client address (browser tabs); more get too_many_streams
    IDLE_STREAM_S=20,  # a started stream with no audio for this long is closed with idle_timeout
    MAX_STREAM_S=3600,  # one stream's audio; longer gets stream_too_long
    STREAM_BURST_S=5.0,  # audio a client may send ahead of real time ...
    STREAM_RATE=1.5,  # ... and the sustained rate allowed (x real time); beyond: too_fast
    PING_INTERVAL_S=5,  # Engine.IO pings: a vanished client is dropped after interval + timeout
    PING_TIMEOUT_S=5,
    VAD_BATCH_MS=40,  # every stream's new audio is judged by the VAD together this often; 0: each frame at once, alone
    WS_RECEIVE_BYTES=4096,  # bytes a WebSocket connection's reader asks the socket for at a time (simple-websocket's default)
    WS_MESSAGES_PER_S=600,  # WebSocket messages a client address may send a second over all its connections: 4
    #                         streams of 20 ms frames at 1.5x real time (a page streaming: 8) ...
    WS_MESSAGE_BURST=2000,  # ... and at once (their 5 s burst); beyond, its connections are read no faster
    WS_READ_INLINE=True,  # a connection's request thread reads its socket (no reader thread per connection,
    #                       one thread wake-up per message fewer: docs/webapp.md; TLS connections keep the
    #                       thread); False: simple-websocket's thread
    WS_COMPRESSION=False,  # accept browsers' offer of permessage-deflate: a third less audio on the wire, for
    #                        240 KiB per connection and a client's bytes costing ~100x more to read (docs/webapp.md)
    # Inference lanes: each a thread that batches the windows of its streams for one model process
    INFERENCE_WORKERS="auto",  # lanes: "auto" = one per CPU core
    INFERENCE_MODE="process",  # "process": each lane's model in a child process; "thread": in this process;
    # "redis": lanes send their batches to `python -m webapp.tier` workers through REDIS_URL (docs/webapp.md)
    INFERENCE_DEVICE="cpu",  # "cuda" to run the lanes' models on a GPU (batches across streams)
    INFERENCE_PRECISION="auto",  # CPU: "float32", "bfloat16", or "auto" (bfloat16 where it is 1.2x+ faster, timed at start)
    BATCH_MAX="auto",  # windows per predict_proba call: "auto" = 4 on CPU (bigger batches cost more per window
    #                    on shared cores: docs/benchmarks.md), 32 on a GPU
    LANE_DISPATCH="window",  # "window": a stream's windows go to the lane with the least waiting whenever
    #                          none of its own wait (in order all the same); "stream": a stream keeps its first lane
    BATCH_WAIT_MS=5,  # wait this long for more windows after the first
    QUEUE_MAX=512,  # pending windows; beyond: server_busy for the sender
    COALESCE_S=0.5,  # a stream's window that waited this long is skipped when a newer one waits too
    STALE_S=2.0,  # windows waiting longer are never analysed (load shedding)
    INFERENCE_THREADS=1,  # torch/BLAS/OpenMP threads per model: 1 is fastest on a busy 2-core machine (docs/webapp.md)
    GIL_SWITCH_INTERVAL_S=0.001,  # sys.setswitchinterval of the web process (Python: 0.005): lanes wait less (docs/benchmarks.md)
    # Several app processes (behind nginx): Flask-SocketIO's message queue, so any process can emit to any client
    REDIS_URL=None,  # e.g. "redis://127.0.0.1:6379/0"; None: this process is alone
    TIER_REDIS_URL=None,  # INFERENCE_MODE "redis": the tier's Redis (None: REDIS_URL)
    # Clients and proxies
    TRUSTED_PROXIES=0,  # reverse proxies in front that append X-Forwarded-For (nginx: 1); 0 trusts none
    REQUEST_TIMEOUT_S=30,  # run.py: a connection that sends nothing for this long is closed
    MAX_CONNECTIONS=512,  # run.py: open connections (one thread each); more are closed at once
    # Sharing the demo (run.py fills these in): the links to send, and the one people reach us by
    SHARE_URLS=[],
    PUBLIC_URL=None,
    HTTPS=False,
    # Front-end libraries served from node_modules under /vendor/<package>/<path>
    VENDOR_DIR=str(ROOT / "node_modules"),
    VENDOR_PACKAGES={"socket.io-client": "dist/", "chart.js": "dist/", "@kurkle/color": "dist/",
                     "qrcode-generator": "dist/"},
    VENDOR_EXTENSIONS=(".js", ".mjs", ".css", ".map"),
)
