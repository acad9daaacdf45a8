"""Hostile uploads and messages against the real server (``python run.py`` on a free port).

Decompression bombs with lying headers, playlists that name files on the server's disk, float
overflow, absurd sample rates, truncated and too-short files: each must get a 4xx within seconds
while the server's peak memory stays bounded. Then a bounded fuzz run of malformed uploads and
Socket.IO messages: never a 5xx, always valid JSON, and the server still serves a good client.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from test_server import START_TIMEOUT_S, check_stream, free_port, serve, stream_once

pytestmark = pytest.mark.slow
HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg is not installed")
ANSWER_WITHIN_S = 10  # every hostile upload is answered within this
# Peak RSS may grow by at most the largest upload (25 MB) plus twice the decoded size of the longest
# accepted audio (600 s of 16 kHz float32: 38.4 MB) plus the analysis of that audio: 200 MB.
RSS_BOUND_MB = 200


# ---- the server -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(random_weights, tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    cmd = [sys.executable, "run.py", "--port", str(port), "--weights", str(random_weights)]
    # Hostile tests send many uploads from one address, one at a time: that is allowed.
    with serve(cmd, url, log, env={"SER_UPLOAD_WAIT_S": "30"}) as proc:
        requests.post(url + "/api/predict", files={"file": ("a.wav", wav_tone(2.0))}, timeout=60)  # warm up
        yield {"url": url, "pid": proc.pid, "baseline_mb": peak_rss_mb(proc.pid), "log": log}


def proc_status(pid: int, field: str) -> int:
    """One number from /proc/<pid>/status (``VmHWM``: peak RSS in kB; ``Threads``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def peak_rss_mb(pid: int) -> float:
    return proc_status(pid, "VmHWM") / 1024


def post(server, data: bytes, name: str = "upload.wav") -> requests.Response:
    began = time.monotonic()
    res = requests.post(server["url"] + "/api/predict", files={"file": (name, data)}, timeout=60)
    assert time.monotonic() - began < ANSWER_WITHIN_S, f"{name}: answered after {time.monotonic() - began:.1f} s"
    return res


def strict_json(res: requests.Response):
    """The body as JSON, refusing NaN and Infinity (which are not JSON)."""
    def refuse(token):
        raise AssertionError(f"not JSON: {token} in {res.text[:200]}")
    return json.loads(res.text, parse_constant=refuse)


def assert_refused(server, res: requests.Response, status: int, code: str | None = None):
    body = strict_json(res)
    assert res.status_code == status, (res.status_code, body)
    assert body["error"] and (code is None or body.get("code") == code), body
    grown = peak_rss_mb(server["pid"]) - server["baseline_mb"]
    assert grown < RSS_BOUND_MB, f"peak RSS grew by {grown:.0f} MB"


# ---- hostile files ----------------------------------------------------------------------------------
def wav_tone(seconds: float, rate: int = 16000, subtype: str = "PCM_16", amp: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def riff(fmt: bytes, data: bytes, extra: bytes = b"") -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gsm_wav(rate: int, nbytes: int) -> bytes:
    """GSM 6.10 (WAVE_FORMAT_GSM610) claiming ``rate`` Hz: each 65-byte block is 320 samples."""
    fmt = struct.pack("<HHIIHHHH", 0x31, 1, rate, max(1, rate * 65 // 320), 65, 0, 2, 320)
    fact = b"fact" + struct.pack("<II", 4, nbytes // 65 * 320)
    return riff(fmt, bytes(random.Random(0).randrange(256) for _ in range(nbytes)), fact)


def pcm_wav(rate: int, seconds_of_data: float = 1.0) -> bytes:
    frames = int(16000 * seconds_of_data)
    fmt = struct.pack("<HHIIHH", 1, 1, rate & 0xFFFFFFFF, (rate * 2) & 0xFFFFFFFF, 2, 16)
    return riff(fmt, np.zeros(frames, "<i2").tobytes())


def ffmpeg_make(args: list[str], fmt: str) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *args, "-f", fmt, str(out)],
                       check=True, capture_output=True, timeout=120)
        data = out.read_bytes()
    assert data
    return data


def test_gsm_wav_at_1_hz_is_refused_before_decoding(server):
    data = gsm_wav(1, 32 * 1024)  # 32 KB that decode to 45 hours at 1 Hz (10 GB once resampled)
    assert_refused(server, post(server, data), 400, "bad_sample_rate")
    assert_refused(server, post(server, gsm_wav(1, 65 + 44)), 400, "bad_sample_rate")  # the 109-byte version


@pytest.mark.parametrize("rate", [1, 7999, 96001, 4_000_000_000])
def test_absurd_header_rates_are_refused(server, rate):
    assert_refused(server, post(server, pcm_wav(rate)), 400)


@needs_ffmpeg
def test_alac_bomb_stops_at_the_duration_limit(server):
    # About 0.2 MB of ALAC that decodes to 50 minutes: ffmpeg is stopped after 600 s of output.
    data = ffmpeg_make(["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3000", "-c:a", "alac",
                        "-movflags", "+faststart"], "ipod")
    assert len(data) < 2_000_000
    assert_refused(server, post(server, data, "bomb.m4a"), 413, "too_long")


@needs_ffmpeg
def test_flac_of_unknown_length_stops_at_the_duration_limit(server):
    # A streamed FLAC (total samples "unknown") of 3 hours of silence: no header to refuse it by.
    data = ffmpeg_make(["-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "10800", "-c:a", "flac"], "flac")
    assert_refused(server, post(server, data, "bomb.flac"), 413, "too_long")


def test_flac_declaring_hours_is_refused_from_its_header(server):
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000 * 700, np.int16), 8000, format="FLAC")  # 700 s of silence, declared
    assert_refused(server, post(server, buf.getvalue(), "long.flac"), 413, "too_long")


@needs_ffmpeg
@pytest.mark.parametrize("entry", ["file://{path}", "{path}", "concat:{path}|{path}", "subfile,,start,0,end,0,,:{path}"])
@pytest.mark.parametrize("prefix", [b"ID3\x04\x00\x00\x00\x00\x00\x00", b"\xff\xfb\x90\x64", b""])
def test_playlists_naming_a_file_on_the_server_are_never_followed(server, tmp_path, entry, prefix):
    """A playlist behind an ID3 tag (or a frame sync) must not make ffmpeg open a file of the server."""
    target = tmp_path / "secret.fifo"
    os.mkfifo(target)
    opened = threading.Event()
    stop = threading.Event()

    def watch():  # opening a FIFO for writing succeeds only while someone has it open for reading
        while not stop.is_set():
            try:
                fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.005)
                continue
            opened.set()
            os.close(fd)
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    playlist = ("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n" + entry.format(path=target)
                + "\n#EXT-X-ENDLIST\n").encode()
    res = post(server, prefix + playlist, "playlist.mp3")
    time.sleep(0.2)
    stop.set()
    watcher.join(1)
    assert res.status_code in (400, 415), res.text
    assert not opened.is_set(), "the decoder opened a file named by the upload"


def test_float_samples_near_1e25_give_finite_json(server):
    wave = np.full(32000, 1e25, np.float32) * np.sin(np.linspace(0, 200, 32000)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV", subtype="FLOAT")
    res = post(server, buf.getvalue())
    body = strict_json(res)  # never NaN
    assert res.status_code in (200, 400), body
    if res.status_code == 200:
        assert np.isfinite(body["confidence"]) and abs(sum(body["probabilities"].values()) - 1) < 1e-3


def test_a_truncated_wav_is_refused(server):
    data = wav_tone(4.0, 48000)[:3000]  # the header promises 4 s; 30 ms of samples follow
    assert_refused(server, post(server, data), 400, "truncated")


def test_audio_too_short_to_carry_an_emotion_is_refused(server):
    assert_refused(server, post(server, wav_tone(0.03)), 400, "too_short")


def test_the_largest_accepted_upload_keeps_memory_bounded(server):
    """600 s of audio (the limit), 19 MB: analysed, and memory stays within the documented bound."""
    res = post_slow(server, wav_tone(600.0, 16000))
    assert res.status_code == 200, res.text
    grown = peak_rss_mb(server["pid"]) - server["baseline_mb"]
    assert grown < RSS_BOUND_MB, f"peak RSS grew by {grown:.0f} MB"


def post_slow(server, data: bytes) -> requests.Response:
    return requests.post(server["url"] + "/api/predict", files={"file": ("long.wav", data)}, timeout=300)


# ---- bounded fuzzing --------------------------------------------------------------------------------
FUZZ_UPLOADS = 300
FUZZ_MESSAGES = 300


def seed_files() -> list[tuple[str, bytes]]:
    seeds = [("a.wav", wav_tone(1.0)), ("b.wav", wav_tone(1.0, 44100, "FLOAT")), ("c.wav", wav_tone(1.0, 8000, "PCM_U8"))]
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, np.float32), 16000, format="FLAC")
    seeds.append(("d.flac", buf.getvalue()))
    if HAVE_FFMPEG:
        src = ["-f", "lavfi", "-i", "sine=f=330:r=48000:d=1"]
        seeds += [("e.ogg", ffmpeg_make(src + ["-c:a", "libopus"], "ogg")),
                  ("f.webm", ffmpeg_make(src + ["-c:a", "libopus"], "webm")),
                  ("g.mp3", ffmpeg_make(src + ["-c:a", "libmp3lame"], "mp3")),
                  ("h.m4a", ffmpeg_make(src + ["-c:a", "aac", "-movflags", "+faststart"], "ipod")),
                  ("i.aac", ffmpeg_make(src + ["-c:a", "aac"], "adts"))]
    return seeds


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of: truncate, flip bytes in the header or body, overwrite header fields, splice, repeat."""
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(b[:rng.randrange(len(b))])
    if kind == 1:
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(min(64, len(b)))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:
        for _ in range(rng.randrange(1, 64)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 3:  # a 32-bit field somewhere in the first 64 bytes set to an extreme
        at = rng.randrange(0, min(60, len(b) - 4))
        b[at:at + 4] = struct.pack("<I", rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)]))
        return bytes(b)
    if kind == 4:
        cut = rng.randrange(len(b))
        return bytes(b[:cut]) + rng.randbytes(rng.randrange(1, 4096)) + bytes(b[cut:])
    return bytes(b[:rng.randrange(8, 128)]) * rng.randrange(2, 200)


def test_fuzzed_uploads_never_get_a_5xx_or_invalid_json(server):
    rng = random.Random(1234)
    seeds = seed_files()
    statuses: dict[int, int] = {}
    for i in range(FUZZ_UPLOADS):
        name, data = seeds[i % len(seeds)]
        res = post(server, mutate(data, rng), name)
        body = strict_json(res)
        statuses[res.status_code] = statuses.get(res.status_code, 0) + 1
        assert res.status_code < 500, (i, name, res.status_code, body)
        if res.status_code == 200:
            assert np.isfinite([body["confidence"], *body["probabilities"].values()]).all()
        else:
            assert isinstance(body["error"], str) and body["error"]
    assert set(statuses) - {200, 400, 413, 415} == set(), statuses
    assert requests.get(server["url"] + "/healthz", timeout=10).status_code == 200


def test_fuzzed_socketio_messages_leave_the_server_serving(server):
    import socketio

    rng = random.Random(99)
    payloads = [None, 0, -1, 1e308, "x" * 1000, [], {}, {"sample_rate": "16000"}, {"sample_rate": 16000.5},
                {"sample_rate": True}, {"sample_rate": 10 ** 30}, {"sample_rate": 16000}, b"", b"\x00",
                b"\x01\x02\x03", bytes(32001), [1, 2, 3], {"audio": b"\x00\x00"}]
    errors = []
    sio = socketio.Client()
    sio.on("error", lambda data: errors.append(data), namespace="/stream")
    sio.connect(server["url"], namespaces=["/stream"], transports=["websocket"], wait_timeout=20)
    try:
        for _ in range(FUZZ_MESSAGES):
            event = rng.choice(["start", "audio", "stop", "audio", "nonsense", "start"])
            payload = rng.choice(payloads + [rng.randbytes(rng.randrange(0, 5000))])
            sio.emit(event, payload, namespace="/stream")
        time.sleep(1.0)
    finally:
        sio.disconnect()
    assert errors and all(isinstance(e.get("code"), str) and isinstance(e.get("message"), str) for e in errors)
    assert requests.get(server["url"] + "/healthz", timeout=10).status_code == 200
    check_stream(stream_once(server["url"], transports=["websocket"]))  # a good client is served as ever


OVERSIZED_CLIENTS, OVERSIZED_MB = 16, 8  # each sends one WebSocket message of this size
OVERSIZED_BOUND_MB = 32  # what the server's peak memory may grow by while refusing all of them


@pytest.mark.parametrize("read_inline", ["true", "false"])
def test_oversized_websocket_messages_are_refused_while_they_arrive(random_weights, tmp_path, read_inline):
    """Engine.IO checks a message's size (1 MB) only once simple-websocket has assembled it all:
    without a bound while it arrives, these 16 x 8 MB messages would all be held in memory at once.
    Each connection is closed (code 1009, or reset while still sending) and a good client is served;
    read by the request threads (the default) or by simple-websocket's reader threads."""
    import websocket

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--port", str(port), "--weights", str(random_weights)]
    with serve(cmd, url, tmp_path / "server.log", env={"SER_WS_READ_INLINE": read_inline}) as proc:
        check_stream(stream_once(url, transports=["websocket"]))  # the baseline includes a real stream
        baseline = peak_rss_mb(proc.pid)
        outcomes: list = []

        def send_one():
            ws = websocket.create_connection(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
                                             timeout=ANSWER_WITHIN_S)
            try:
                ws.recv()  # Engine.IO's open packet
                ws.send_binary(bytes(OVERSIZED_MB << 20))
                outcomes.append(ws.recv_data(control_frame=True))
            except (ConnectionError, BrokenPipeError) as e:  # closed while the client was still sending
                outcomes.append(e)
            finally:
                ws.shutdown()

        clients = [threading.Thread(target=send_one) for _ in range(OVERSIZED_CLIENTS)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(2 * ANSWER_WITHIN_S)
        assert len(outcomes) == OVERSIZED_CLIENTS
        for got in outcomes:
            if not isinstance(got, Exception):
                opcode, data = got
                assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(data[:2], "big") == 1009
        assert peak_rss_mb(proc.pid) - baseline < OVERSIZED_BOUND_MB
        check_stream(stream_once(url, transports=["websocket"]))


def server_threads(server) -> int:
    return proc_status(server["pid"], "Threads")


def test_a_websocket_connection_is_read_by_its_own_request_thread(server):
    """WS_READ_INLINE: no reader thread per WebSocket connection (simple-websocket's would wake the
    request thread for every message): 20 connections add three threads each (the request, Engine.IO's
    writer and its ping timer; four with a reader thread), and they are all gone once the clients leave."""
    import websocket

    before = server_threads(server)
    connections = []
    try:
        for _ in range(20):
            ws = websocket.create_connection(server["url"].replace("http://", "ws://")
                                             + "/socket.io/?EIO=4&transport=websocket", timeout=10)
            ws.recv()  # Engine.IO's open packet
            ws.send("40/stream,")
            ws.recv()  # connected to the namespace
            connections.append(ws)
        time.sleep(0.5)
        per_connection = (server_threads(server) - before) / len(connections)
    finally:
        for ws in connections:
            ws.close()
    assert 2.5 <= per_connection <= 3.5, per_connection
    deadline = time.monotonic() + 15  # the ping timers end within one ping interval (5 s)
    while server_threads(server) > before + 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert server_threads(server) <= before + 2
    check_stream(stream_once(server["url"], transports=["websocket"]))


# ---- WebSocket compression (permessage-deflate) --------------------------------------------------
class DeflateClient:
    """A raw WebSocket client (wsproto) that offers permessage-deflate, as every browser does."""

    def __init__(self, url: str):
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request
        from wsproto.extensions import PerMessageDeflate

        host = url.split("//", 1)[1]
        self.sock = socket.create_connection(tuple(host.split(":")), timeout=ANSWER_WITHIN_S)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=host, target="/socket.io/?EIO=4&transport=websocket",
                                               extensions=[PerMessageDeflate()])))
        accepted = self.next_event()
        assert isinstance(accepted, AcceptConnection), accepted
        self.compressed = bool(accepted.extensions)

    def next_event(self):
        """The next handshake, message or close event (a closed socket: None)."""
        while True:
            event = next(self.ws.events(), None)
            if event is not None:
                return event
            data = self.sock.recv(65536)
            if not data:
                return None
            self.ws.receive_data(data)

    def send(self, message):
        from wsproto.events import BytesMessage, TextMessage

        self.sock.sendall(self.ws.send(TextMessage(message) if isinstance(message, str) else BytesMessage(message)))

    def join(self):
        """Engine.IO's open packet, then the /stream namespace."""
        assert self.next_event().data.startswith("0{")
        self.send("40/stream,")
        assert self.next_event().data.startswith("40/stream,")


def test_websocket_compression_is_declined_by_default(server):
    """Accepted, a kilobyte of deflated zeros is a megabyte for the server to read (bench/deflate_bench.py:
    a 1 Mbit/s client took 36 % of a core instead of 0.6 %): a browser's offer is declined, and its
    stream works uncompressed."""
    client = DeflateClient(server["url"])
    try:
        assert not client.compressed
        client.join()
    finally:
        client.sock.close()
    check_stream(stream_once(server["url"], transports=["websocket"]))


DEFLATE_BOMB_CLIENTS, DEFLATE_BOMB_MB = 4, 64  # each sends one message of this many zero bytes, deflated
DEFLATE_BOMB_BOUND_MB = 48  # what the server's peak memory may grow by while refusing all of them


def test_accepted_compression_still_bounds_a_deflate_bomb(random_weights, tmp_path):
    """With WS_COMPRESSION on, compressed streams work, and a 64 MB message of zeros that arrives as
    64 KB is refused (1009) while it inflates, not once it is whole."""
    from wsproto.events import CloseConnection

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--port", str(port), "--weights", str(random_weights)]
    with serve(cmd, url, tmp_path / "server.log", env={"SER_WS_COMPRESSION": "true"}) as proc:
        check_stream(stream_once(url, transports=["websocket"]))
        baseline = peak_rss_mb(proc.pid)
        for _ in range(DEFLATE_BOMB_CLIENTS):
            client = DeflateClient(url)
            try:
                assert client.compressed
                client.join()
                client.send('451-/stream,["audio",{"_placeholder":true,"num":0}]')
                client.send(bytes(DEFLATE_BOMB_MB << 20))
                event = client.next_event()
                assert isinstance(event, CloseConnection) and event.code == 1009, event
            finally:
                client.sock.close()
        assert peak_rss_mb(proc.pid) - baseline < DEFLATE_BOMB_BOUND_MB
        check_stream(stream_once(url, transports=["websocket"]))


# ---- floods of messages ---------------------------------------------------------------------------
FLOOD_MESSAGES = 5000  # tiny Socket.IO events, sent at once


def test_a_message_flood_is_read_no_faster_than_the_clients_budget(server):
    """Each message costs the server about 50 us whatever it holds: a client (address) may send
    WS_MESSAGE_BURST (2,000) at once and WS_MESSAGES_PER_S (600) a second over all its
    connections; beyond, its connections are read no faster, so an acknowledged event sent after
    5,000 others is answered only once they have been read at that rate, and nothing is lost."""
    import websocket

    ws = websocket.create_connection(server["url"].replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
                                     timeout=30)
    try:
        ws.recv()  # Engine.IO's open packet
        ws.send("40/stream,")
        began = time.monotonic()
        for _ in range(FLOOD_MESSAGES):
            ws.send('42/stream,["nonsense"]')
        ws.send('42/stream,7["start",{"sample_rate":16000}]')  # acknowledged: ack id 7
        while True:
            text = ws.recv()
            if text == "2":
                ws.send("3")  # Engine.IO's ping
            elif text.startswith("43/stream,7"):
                break
        took = time.monotonic() - began
    finally:
        ws.close()
    least = (FLOOD_MESSAGES - 2000) / 600
    assert 0.8 * least < took < 4 * least + 5, took
    time.sleep(2000 / 600 + 0.5)  # refilled: the module's other tests are not affected
    check_stream(stream_once(server["url"], transports=["websocket"]))


def test_a_long_polling_flood_waits_for_the_same_budget(server):
    """Engine.IO's long-polling transport decodes up to 16 packets a POST: each POST (and each new
    session) is charged 16 messages of the client's budget and waits while it is spent, so 200
    POSTs take at least (200 x 16 - 2,000) / 600 s, and none gets a 5xx."""
    s = requests.Session()
    r = s.get(server["url"] + "/socket.io/?EIO=4&transport=polling", timeout=10)
    base = server["url"] + "/socket.io/?EIO=4&transport=polling&sid=" + json.loads(r.text[1:])["sid"]
    s.post(base, data="40/stream,", timeout=10)
    body = "\x1e".join(['42/stream,["nonsense"]'] * 16)
    began = time.monotonic()
    statuses = [s.post(base, data=body, timeout=30).status_code for _ in range(200)]
    took = time.monotonic() - began
    assert max(statuses) < 500, statuses
    assert took > 0.8 * (200 * 16 + 16 - 2000) / 600, took
    time.sleep(2000 / 600 + 0.5)  # refilled: the module's other tests are not affected


ATTACHMENTS, ATTACHMENT_BYTES = 100, 900_000  # declared in one packet, then sent: 90 MB if all were held


def test_a_packet_declaring_many_attachments_is_refused_and_nothing_is_held(server):
    """python-socketio holds every attachment a packet declares until the last one arrives: a packet
    declaring more than one (the contract's ``audio`` has one) gets ``error`` too_many_attachments,
    and what follows is dropped unread, so memory does not grow with it."""
    import websocket

    ws = websocket.create_connection(server["url"].replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
                                     timeout=ANSWER_WITHIN_S)
    baseline = peak_rss_mb(server["pid"])
    try:
        ws.recv()  # Engine.IO's open packet
        ws.send("40/stream,")
        assert ws.recv().startswith("40/stream,")
        ws.send(f'45{ATTACHMENTS}-/stream,["audio",{{"_placeholder":true,"num":0}}]')
        for _ in range(ATTACHMENTS):
            ws.send_binary(bytes(ATTACHMENT_BYTES))
        while True:
            text = ws.recv()
            if text.startswith('42/stream,["error"'):
                break
        assert json.loads(text[len("42/stream,"):])[1]["code"] == "too_many_attachments"
    finally:
        ws.close()
    assert peak_rss_mb(server["pid"]) - baseline < 32
    check_stream(stream_once(server["url"], transports=["websocket"]))
