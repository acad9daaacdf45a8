"""What WebSocket compression (permessage-deflate) costs the web process per live stream.

    python bench/deflate_bench.py [--seconds 60] [--connections 200] [--flood-s 10]

Browsers offer permessage-deflate on every WebSocket; simple-websocket accepts it unless the server
declines (``WS_COMPRESSION``, off by default), and the benchmark clients never ask for it. This
replays one stream's traffic through wsproto, the library simple-websocket runs, on one thread:
real speech (RAVDESS/TESS) in the page's 250 ms frames (Socket.IO's placeholder text and the binary
frame), read in ``WS_RECEIVE_BYTES`` pieces as the server reads them, and one ``emotion`` event per
0.5 s hop sent back, with and without compression. It reports the server's CPU per stream-second
(as a share of a core), the bytes on the wire, and the memory each connection holds, measured as
the resident size of ``--connections`` connections that have each received one frame and sent one
event.

Then what a hostile client's bytes cost: the real server (``run.py``, with compression accepted and
declined in turn) while one client that offers permessage-deflate sends, for ``--flood-s`` seconds
and at most ``--flood-rate`` bytes a second on the wire, audio messages of ``--flood-bytes`` zeros
(refused as too long, after they have been read). Reports the web process's CPU per megabyte the
client sent. Writes ``bench/results/deflate_bench_<time>.json``.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (DEFAULT_AUDIO, FRAME_MS, HOP_S, NS, ONE_ADDRESS, ROOT, ProcStats, default_weights, free_port,  # noqa: E402
                     load_speech, save_results, start_server, stop_server)
from loadgen import AUDIO_EVENT, flood  # noqa: E402

sys.path.insert(0, str(ROOT))
from webapp.config import DEFAULTS  # noqa: E402

RATE = 16000
LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def pair(deflate: bool):
    """A connected (server, client) pair of wsproto connections, the client offering permessage-deflate
    (as browsers do) when ``deflate``; the server accepts what simple-websocket accepts."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request
    from wsproto.extensions import PerMessageDeflate

    server, client = WSConnection(ConnectionType.SERVER), WSConnection(ConnectionType.CLIENT)
    server.receive_data(client.send(Request(host="localhost", target="/socket.io/?EIO=4&transport=websocket",
                                            extensions=[PerMessageDeflate()] if deflate else [])))
    next(server.events())
    client.receive_data(server.send(AcceptConnection(extensions=[PerMessageDeflate()])))
    accepted = next(client.events())
    assert bool(accepted.extensions) == deflate
    return server, client


def emotion_event(t1: float, rng: random.Random) -> str:
    """An ``emotion`` event as the server sends it: Engine.IO + Socket.IO framing around the JSON."""
    weights = [rng.random() for _ in LABELS]
    probs = {k: round(w / sum(weights), 4) for k, w in zip(LABELS, weights)}
    label = max(probs, key=probs.get)
    event = {"t0": round(t1 - 3.0, 3), "t1": round(t1, 3), "speech": True, "label": label,
             "confidence": probs[label], "probabilities": probs, "uncertain": probs[label] < 0.4}
    return "42" + NS + "," + json.dumps(["emotion", event])


def stream_traffic(client, pcm, frame: int, rng: random.Random) -> tuple[list[bytes], list[str]]:
    """The bytes a client puts on the wire for ``pcm`` (placeholder + frame per 250 ms) and the events
    the server sends back (one per hop)."""
    from wsproto.events import BytesMessage, TextMessage

    wire = []
    for i in range(0, len(pcm) - frame + 1, frame):
        wire.append(client.send(TextMessage(AUDIO_EVENT)) + client.send(BytesMessage(pcm[i:i + frame].tobytes())))
    hops = int(len(pcm) / RATE / HOP_S)
    return wire, [emotion_event((k + 1) * HOP_S + 3.0, rng) for k in range(hops)]


def serve(server, wire: list[bytes], events: list[str], receive_bytes: int) -> tuple[int, int]:
    """What the server's reader and emitter do for one stream: bytes read, messages received, and
    bytes sent back."""
    from wsproto.events import Message, TextMessage

    got = sent = 0
    for chunk in wire:
        for i in range(0, len(chunk), receive_bytes):
            server.receive_data(chunk[i:i + receive_bytes])
            for event in server.events():
                if isinstance(event, Message) and event.message_finished:
                    got += 1
    for text in events:
        sent += len(server.send(TextMessage(text)))
    return got, sent


def cpu_per_stream(pcm, deflate: bool, receive_bytes: int, repeats: int) -> dict:
    frame = RATE * FRAME_MS // 1000
    best = float("inf")
    for r in range(repeats):
        server, client = pair(deflate)
        wire, events = stream_traffic(client, pcm, frame, random.Random(r))
        t = time.thread_time()
        got, sent = serve(server, wire, events, receive_bytes)
        best = min(best, time.thread_time() - t)
        assert got == 2 * len(wire)
    seconds = len(pcm) / RATE
    return {"cpu_ms_per_stream_s": round(best * 1000 / seconds, 4),
            "core_percent_per_stream": round(best * 100 / seconds, 4),
            "wire_in_bytes_per_s": round(sum(map(len, wire)) / seconds),
            "wire_out_bytes_per_s": round(sent / seconds)}


def memory_per_connection(pcm, deflate: bool, n: int) -> float:
    """KiB of resident memory per connection, over ``n`` connections that each received a frame and
    sent an event (zlib's windows stay for the connection's life: context takeover)."""
    def rss_kib() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024

    frame = RATE * FRAME_MS // 1000
    before = rss_kib()
    keep = []
    for k in range(n):
        server, client = pair(deflate)
        wire, events = stream_traffic(client, pcm[:frame], frame, random.Random(k))
        serve(server, wire, [emotion_event(3.5, random.Random(k))], 1 << 20)
        keep.append((server, client))
    return round((rss_kib() - before) / n, 1)


def flood_cost(args, compression: bool, weights: Path, tmp: Path) -> dict:
    """The web process's CPU while one client floods it, compression accepted or declined (the
    per-address message budget lifted: this measures compression alone)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--weights", str(weights)]
    proc = start_server(cmd, url, tmp / f"server_{compression}.log", {**ONE_ADDRESS, "SER_WS_COMPRESSION": json.dumps(compression)})
    try:
        time.sleep(2)  # start-up work (calibration) done
        web = ProcStats(proc.pid)
        cpu0 = web.cpu_seconds(own=True)
        got = flood(port, args.flood_s, args.flood_rate, args.flood_bytes)
        cpu = web.cpu_seconds(own=True) - cpu0
    finally:
        stop_server(proc)
    megabytes = got["wire_bytes"] / 1e6
    return {**got, "web_cpu_s": round(cpu, 2), "web_core_percent": round(cpu * 100 / got["seconds"], 1),
            "web_cpu_ms_per_wire_mb": round(cpu * 1000 / megabytes, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60, help="speech per measurement")
    p.add_argument("--repeats", type=int, default=5, help="timings per setting; the fastest is kept")
    p.add_argument("--connections", type=int, default=200, help="connections held for the memory figure")
    p.add_argument("--flood-s", type=float, default=10, help="seconds of the hostile client's flood (0: skip)")
    p.add_argument("--flood-rate", type=float, default=125_000, help="its bytes a second on the wire (1 Mbit/s)")
    p.add_argument("--flood-bytes", type=int, default=960_000, help="zero bytes per audio message (the server "
                   "reads up to 1 MB)")
    p.add_argument("--weights", type=Path, default=None, help="the server's model (default: weights/)")
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()

    pcm = load_speech(args.audio_dir, args.seconds, 1, RATE)[0]
    receive_bytes = int(DEFAULTS["WS_RECEIVE_BYTES"])
    rows = {}
    for deflate in (False, True):
        name = "deflate" if deflate else "plain"
        rows[name] = cpu_per_stream(pcm, deflate, receive_bytes, args.repeats)
    # memory last and in order: each measurement keeps its connections until the process ends
    for deflate in (False, True):
        name = "deflate" if deflate else "plain"
        rows[name]["kib_per_connection"] = memory_per_connection(pcm, deflate, args.connections)
    extra = rows["deflate"]["cpu_ms_per_stream_s"] - rows["plain"]["cpu_ms_per_stream_s"]
    result = {"seconds": args.seconds, "frame_ms": FRAME_MS, "receive_bytes": receive_bytes,
              "connections": args.connections, **rows,
              "deflate_extra_core_percent_per_stream": round(extra / 10, 4),
              "deflate_wire_in_ratio": round(rows["deflate"]["wire_in_bytes_per_s"]
                                             / rows["plain"]["wire_in_bytes_per_s"], 3)}
    print(f"{'':8} {'CPU ms per stream-s':>20} {'% of a core':>12} {'in B/s':>8} {'out B/s':>8} {'KiB per conn':>13}")
    for name, r in rows.items():
        print(f"{name:8} {r['cpu_ms_per_stream_s']:>20.3f} {r['core_percent_per_stream']:>12.4f} "
              f"{r['wire_in_bytes_per_s']:>8} {r['wire_out_bytes_per_s']:>8} {r['kib_per_connection']:>13.1f}")
    if args.flood_s > 0:
        tmp = Path(tempfile.mkdtemp(prefix="deflate_bench_"))
        weights = args.weights or default_weights(tmp)
        result["flood"] = {"rate_bytes_per_s": args.flood_rate, "message_bytes": args.flood_bytes}
        for compression in (False, True):
            f = result["flood"]["accepted" if compression else "declined"] = flood_cost(args, compression, weights, tmp)
            print(f"flood, compression {'accepted' if compression else 'declined'}: {f['messages']} messages, "
                  f"{f['wire_bytes'] / 1e6:.2f} MB on the wire in {f['seconds']} s -> web process "
                  f"{f['web_core_percent']} % of a core ({f['web_cpu_ms_per_wire_mb']} ms per MB sent)")
    save_results(args.out, "deflate_bench", result)


if __name__ == "__main__":
    main()
