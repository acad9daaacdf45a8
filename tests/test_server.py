"""The real servers on a free loopback port: ``python run.py`` (plain and --https) and gunicorn.

A python-socketio client streams audio to /stream over a real WebSocket.
"""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120  # importing torch and loading the model on a busy 2-core machine

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(command: list[str], url: str, log: Path, env: dict | None = None):
    """Run ``command`` until /healthz answers; yields the process; stops it afterwards."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(url + "/healthz", timeout=2, verify=False).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def stream_once(url: str, seconds: float = 2.0, rate: int = 16000, transports=None) -> dict:
    """Stream a tone in 250 ms frames, stop, and return {'ack', 'emotion': [...], 'summary', 'error': [...]}."""
    import socketio

    got = {"emotion": [], "error": [], "summary": None}
    done = threading.Event()
    sio = socketio.Client()
    sio.on("emotion", lambda data: got["emotion"].append(data), namespace="/stream")
    sio.on("error", lambda data: got["error"].append(data), namespace="/stream")

    def on_summary(data):
        got["summary"] = data
        done.set()

    sio.on("summary", on_summary, namespace="/stream")
    sio.connect(url, namespaces=["/stream"], transports=transports, wait_timeout=20)
    try:
        got["ack"] = sio.call("start", {"sample_rate": rate}, namespace="/stream", timeout=20)
        t = np.arange(int(seconds * rate)) / rate
        pcm = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
        for i in range(0, len(pcm), rate // 4):
            sio.emit("audio", pcm[i:i + rate // 4].tobytes(), namespace="/stream")
        sio.emit("stop", namespace="/stream")
        done.wait(30)
    finally:
        sio.disconnect()
    return got


def check_stream(got: dict, seconds: float = 2.0):
    assert got["ack"]["ok"] is True, got
    assert not got["error"], got["error"]
    assert [e["t1"] for e in got["emotion"]] == [0.5 * k for k in range(1, int(seconds / 0.5) + 1)]
    assert got["summary"] is not None and got["summary"]["duration"] == seconds


def check_lean_clients(url: str, n: int = 3, seconds: float = 2.0, ca_file: str | None = None):
    """The benchmarks' one-thread load generator speaks the server's protocol: every stream is
    acknowledged and gets one ``emotion`` per hop, then its summary."""
    sys.path.insert(0, str(ROOT / "bench"))
    from loadgen import ClientGroup, LeanClient

    t = np.arange(int(seconds * 16000)) / 16000
    pcm = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    clients = [LeanClient(url, pcm, delay_s=0.1 * i, ca_file=ca_file) for i in range(n)]
    group = ClientGroup(clients)
    group.start()
    group.join(60)
    for c in clients:
        assert c.failure is None and not c.errors and c.ack["ok"] is True, (c.failure, c.errors, c.ack)
        assert [e["t1"] for _, e in c.events] == [0.5 * k for k in range(1, int(seconds / 0.5) + 1)]
        assert c.missing() == 0 and c.summary_latency is not None and len(c.latencies()) == len(c.events)


def test_run_py_serves_page_upload_and_stream(random_weights, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--weights", str(random_weights)]
    with serve(cmd, url, tmp_path / "server.log"):
        assert requests.get(url + "/", timeout=10).status_code == 200
        health = requests.get(url + "/healthz", timeout=10).json()
        assert health["ok"] and health["model"] == "m"
        res = requests.post(url + "/api/predict", files={"file": ("a.txt", b"not audio at all" * 10)}, timeout=30)
        assert res.status_code == 415 and res.json()["error"]
        check_stream(stream_once(url))  # default transports: polling, then upgrade to WebSocket
        check_stream(stream_once(url, rate=48000, transports=["websocket"]))
        check_lean_clients(url)
        assert requests.get(url + "/healthz", timeout=10).json()["active_streams"] == 0
    # After a WebSocket ends the client's last frames are not read as an HTTP request (a 400 and an
    # error line for every disconnect): the connection closes with the WebSocket.
    log = (tmp_path / "server.log").read_text()
    assert "Bad request" not in log and "Bad HTTP" not in log, log[-2000:]


def test_run_py_https(random_weights, tmp_path):
    pytest.importorskip("cryptography")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--port", str(port), "--https", "--cert-dir", str(tmp_path / "certs"),
           "--weights", str(random_weights)]
    with serve(cmd, url, tmp_path / "server.log"):
        assert (tmp_path / "certs" / "cert.pem").exists()
        # The self-signed certificate verifies against itself, for the names it was made for.
        cert = str(tmp_path / "certs" / "cert.pem")
        res = requests.get(url + "/healthz", timeout=10, verify=cert)
        assert res.status_code == 200
        # Streams over wss, from clients that read and write their TLS socket in one thread:
        # python-socketio's client answers pings from its reader thread while its writer sends,
        # and OpenSSL does not allow one connection to be used by two threads at once (about one
        # stream in 360 failed so, with "cipher operation failed" or "bad length" in the client).
        check_lean_clients(url, ca_file=cert)


def test_gunicorn_production_command(random_weights, tmp_path):
    pytest.importorskip("gunicorn")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "-w", "1", "--threads", "16",
           "-b", f"127.0.0.1:{port}", "wsgi:app"]
    with serve(cmd, url, tmp_path / "gunicorn.log", env={"SER_WEIGHTS": str(random_weights)}):
        assert requests.get(url + "/healthz", timeout=10).json()["model"] == "m"
        check_stream(stream_once(url, transports=["websocket"]))
        check_stream(stream_once(url))


def test_run_py_headers_and_a_slow_client_is_cut_off(random_weights, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--port", str(port), "--weights", str(random_weights)]
    with serve(cmd, url, tmp_path / "server.log", env={"SER_REQUEST_TIMEOUT_S": "2"}):
        for path in ("/", "/api/predict", "/healthz"):
            res = requests.request("POST" if path.startswith("/api") else "GET", url + path, timeout=10)
            assert res.headers["Server"] == "ser-webapp"  # no software versions
            csp = res.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert res.headers["X-Content-Type-Options"] == "nosniff"
            assert res.headers["Referrer-Policy"] == "no-referrer"
        # A client that announces a body and then stalls holds its thread only REQUEST_TIMEOUT_S.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                         b"boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n")
            began = time.monotonic()
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            assert time.monotonic() - began < 8
        assert answer == b"" or answer.split()[1] in (b"400", b"408")  # werkzeug says 400 when the body stops
        # ... and one that never sends its request line is dropped too.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"GET / HTT")
            began = time.monotonic()
            assert sock.recv(4096) == b""  # closed, without an answer
            assert time.monotonic() - began < 8


def _stream_ack(url: str, headers: dict) -> tuple:
    import socketio

    sio = socketio.Client()
    sio.connect(url, namespaces=["/stream"], transports=["websocket"], headers=headers, wait_timeout=20)
    return sio, sio.call("start", {"sample_rate": 16000}, namespace="/stream", timeout=20)


def test_behind_a_trusted_proxy_limits_apply_to_the_forwarded_address(random_weights, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--port", str(port), "--weights", str(random_weights)]
    env = {"SER_TRUSTED_PROXIES": "1", "SER_STREAMS_PER_CLIENT": "1"}
    with serve(cmd, url, tmp_path / "server.log", env=env):
        clients = []
        try:
            for xff, ok in [("203.0.113.7", True), ("203.0.113.8", True),
                            ("9.9.9.9, 203.0.113.7", False)]:  # a forged first entry changes nothing
                sio, ack = _stream_ack(url, {"X-Forwarded-For": xff})
                clients.append(sio)
                assert ack["ok"] is ok, (xff, ack)
                if not ok:
                    assert ack["code"] == "too_many_streams"
        finally:
            for sio in clients:
                sio.disconnect()


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(random_weights, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--port", str(port), "--weights", str(random_weights)]
    with serve(cmd, url, tmp_path / "server.log", env={"SER_STREAMS_PER_CLIENT": "1"}):
        first, ack1 = _stream_ack(url, {"X-Forwarded-For": "203.0.113.7"})
        second, ack2 = _stream_ack(url, {"X-Forwarded-For": "203.0.113.8"})
        first.disconnect()
        second.disconnect()
        assert ack1["ok"] and ack2["ok"] is False and ack2["code"] == "too_many_streams"


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").glob("*/children") for c in t.read_text().split()]


def test_gunicorn_master_replaces_a_killed_worker(random_weights, tmp_path):
    """The documented production command: its master restarts a worker killed by the OOM killer or a crash."""
    pytest.importorskip("gunicorn")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
    env = {"SER_WEIGHTS": str(random_weights), "SER_BIND": f"127.0.0.1:{port}"}
    with serve(cmd, url, tmp_path / "gunicorn.log", env=env) as master:
        (worker,) = _children(master.pid)
        os.kill(worker, 9)
        began = time.monotonic()
        while time.monotonic() - began < START_TIMEOUT_S:
            new = _children(master.pid)
            try:
                if new and new != [worker] and requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the killed worker was not replaced")
        check_stream(stream_once(url, transports=["websocket"]))
