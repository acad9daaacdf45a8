"""What a WebSocket message costs when a reader thread hands it to the request thread.

    python bench/handoff_bench.py [--connections 60] [--rate 8] [--seconds 10] [--repeats 2]

simple-websocket reads each connection in a thread of its own and hands every message to the thread
that wants it (Engine.IO's request thread) through an Event; ``WS_READ_INLINE`` (the default) has
the request thread read its socket itself (``webapp.limits._InlineReader``). This measures the
mechanism alone, in this process: ``--connections`` socket pairs, ``--rate`` messages of 8 KB a
second on each (a streaming page sends 8), read ``WS_RECEIVE_BYTES`` at a time either by a reader
thread that hands each whole message to a consumer thread through a list and an Event
(``handoff``) or by the consumer itself (``inline``), alternating ``--repeats`` times. Reports the process's CPU per message, sender included, and the
difference: the hand-off's own cost. Writes ``bench/results/handoff_bench_<time>.json``.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, save_results  # noqa: E402

sys.path.insert(0, str(ROOT))
from webapp.config import DEFAULTS  # noqa: E402

MESSAGE = b"x" * 8000  # about a 250 ms frame of 16 kHz PCM
RECEIVE_BYTES = DEFAULTS["WS_RECEIVE_BYTES"]  # read as the server reads its sockets


def consume_handoff(sock: socket.socket, until: float):
    """A reader thread reads; this thread waits on the Event it sets (simple-websocket's way)."""
    inbox, ready = [], threading.Event()

    def reader():
        pending = 0
        while time.monotonic() < until:
            try:
                data = sock.recv(RECEIVE_BYTES)
            except socket.timeout:
                continue
            if not data:
                break
            pending += len(data)
            while pending >= len(MESSAGE):  # a whole message: hand it over (once per message)
                pending -= len(MESSAGE)
                inbox.append(data)
                ready.set()

    threading.Thread(target=reader, daemon=True).start()
    while time.monotonic() < until:
        if not ready.wait(0.5):
            continue
        ready.clear()
        while inbox:
            inbox.pop(0)


def consume_inline(sock: socket.socket, until: float):
    """This thread reads its socket itself (``WS_READ_INLINE``)."""
    while time.monotonic() < until:
        try:
            if not sock.recv(RECEIVE_BYTES):
                break
        except socket.timeout:
            continue


def cpu_us_per_message(mode: str, connections: int, rate: float, seconds: float) -> float:
    pairs = [socket.socketpair() for _ in range(connections)]
    for _, theirs in pairs:
        theirs.settimeout(0.5)
    until = time.monotonic() + seconds + 1.0
    consumer = consume_handoff if mode == "handoff" else consume_inline
    threads = [threading.Thread(target=consumer, args=(theirs, until), daemon=True) for _, theirs in pairs]
    for t in threads:
        t.start()
    time.sleep(0.2)
    cpu, sent, end = time.process_time(), 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for ours, _ in pairs:
            ours.send(MESSAGE)
            sent += 1
        time.sleep(1 / rate)
    time.sleep(0.3)  # the last messages read
    used = time.process_time() - cpu
    for t in threads:
        t.join()
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    return 1e6 * used / sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=60)
    ap.add_argument("--rate", type=float, default=8.0, help="messages a second per connection")
    ap.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    ap.add_argument("--repeats", type=int, default=2, help="alternations of the two modes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    runs = {"handoff": [], "inline": []}
    for _ in range(args.repeats):
        for mode in runs:
            runs[mode].append(round(cpu_us_per_message(mode, args.connections, args.rate, args.seconds), 1))
            print(f"{mode:8s} {runs[mode][-1]:7.1f} us of CPU per message (sender included)", flush=True)
    handoff = statistics.median(runs["handoff"]) - statistics.median(runs["inline"])
    print(f"a reader thread's hand-off: {handoff:.1f} us of CPU per message")
    save_results(args.out, "handoff_bench", {"command": "python " + " ".join(sys.argv), "us_per_message": runs,
                                              "handoff_us": round(handoff, 1), "connections": args.connections,
                                              "rate": args.rate, "seconds": args.seconds})


if __name__ == "__main__":
    main()
