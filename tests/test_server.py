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


def stream_once(url: str, seconds: float = 2.0, rate: int = 16000, transports=None, ssl_verify=True) -> dict:
    """Stream a tone in 250 ms frames, stop, and return {'ack', 'emotion': [...], 'summary', 'error': [...]}."""
    import socketio

    got = {"emotion": [], "error": [], "summary": None}
    done = threading.Event()
    sio = socketio.Client(ssl_verify=ssl_verify)
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
        assert requests.get(url + "/healthz", timeout=10).json()["active_streams"] == 0


def test_run_py_https(random_weights, tmp_path):
    pytest.importorskip("cryptography")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    cmd = [sys.executable, "run.py", "--port", str(port), "--https", "--cert-dir", str(tmp_path / "certs"),
           "--weights", str(random_weights)]
    with serve(cmd, url, tmp_path / "server.log"):
        assert (tmp_path / "certs" / "cert.pem").exists()
        # The self-signed certificate verifies against itself, for the names it was made for.
        res = requests.get(url + "/healthz", timeout=10, verify=str(tmp_path / "certs" / "cert.pem"))
        assert res.status_code == 200
        check_stream(stream_once(url, transports=["websocket"], ssl_verify=False))


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
