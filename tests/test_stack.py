"""The multi-process stack on real servers: redis-server + nginx + two gunicorn app processes
(scripts/stack.py), python-socketio clients that behave like the page, and the deployment recipe
(nginx configs under ``nginx -t`` and over TLS, compose file and Dockerfile checked as far as this
machine allows: no container engine here)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.stack import Stack, find_binary, free_port  # noqa: E402

NGINX, REDIS = find_binary("nginx"), find_binary("redis-server")
NS = "/stream"
RATE = 16000
FRAME_S = 0.25
FAILOVER_S = 5.0  # a killed backend's clients are served again within this
CLIENTS = 6

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]
needs_servers = pytest.mark.skipif(not (NGINX and REDIS), reason="nginx and redis-server are not installed")


class PageClient:
    """A python-socketio client that behaves like the page: its own ``?c=``, audio in real time, and
    after a reconnect it sends ``start`` again (resume). Records what arrives, with arrival times."""

    def __init__(self, url: str, ca_file: str | None = None):
        import socketio

        self.cid = uuid.uuid4().hex[:16]
        self.url = f"{url}/?c={self.cid}"
        self.emotions: list[tuple[float, dict]] = []
        self.connects: list[float] = []
        self.disconnects: list[float] = []
        self.errors: list[dict] = []
        self.notices: list[dict] = []
        self.acks: list[dict] = []
        self.summary = None
        self._want_start = threading.Event()
        self._summary = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        session = None
        if ca_file:  # verify against this certificate only (REQUESTS_CA_BUNDLE would win otherwise)
            session = requests.Session()
            session.trust_env, session.verify = False, ca_file
        self.sio = sio = socketio.Client(reconnection=True, reconnection_delay=0.5, reconnection_delay_max=1,
                                         randomization_factor=0, http_session=session)
        sio.on("connect", self._on_connect, namespace=NS)
        sio.on("disconnect", lambda *a: self.disconnects.append(time.monotonic()), namespace=NS)
        sio.on("emotion", lambda d: self.emotions.append((time.monotonic(), d)), namespace=NS)
        sio.on("error", self.errors.append, namespace=NS)
        sio.on("notice", self.notices.append, namespace=NS)
        sio.on("summary", self._on_summary, namespace=NS)

    def _on_connect(self):
        self.connects.append(time.monotonic())
        self._want_start.set()  # the sender thread sends start (an ack cannot be awaited in a handler)

    def _on_summary(self, data):
        self.summary = data
        self._summary.set()

    def connect(self, transports=None):
        self.sio.connect(self.url, namespaces=[NS], transports=transports, wait_timeout=20)

    def start_streaming(self):
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self):
        t = np.arange(int(FRAME_S * RATE)) / RATE
        frame = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._want_start.is_set():
                    self._want_start.clear()
                    self.sio.emit("start", {"sample_rate": RATE}, namespace=NS, callback=self.acks.append)
                elif self.acks and self.acks[-1].get("ok"):
                    self.sio.emit("audio", frame, namespace=NS)
            except Exception:  # not connected right now: the page drops frames until it is again
                pass
            due += FRAME_S
            time.sleep(max(0.0, due - time.monotonic()))

    def finish(self, timeout_s: float = 20) -> dict | None:
        """Stop sending, send ``stop``, wait for the summary, disconnect."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        try:
            self.sio.emit("stop", namespace=NS)
            self._summary.wait(timeout_s)
        finally:
            self.sio.disconnect()
        return self.summary

    @property
    def sid(self) -> str:
        return self.sio.get_sid(namespace=NS)


def backend_of(stack: Stack, cid: str) -> int:
    """Index of the app process nginx sent client ``cid``'s first request to (from nginx's access log)."""
    addresses = [b.address for b in stack.backends]
    for line in (stack.run_dir / "nginx-access.log").read_text().splitlines():
        if f" c={cid} " in line:
            upstream = re.search(r"upstream=(\S+)", line).group(1).split(",")[-1].strip()
            return addresses.index(upstream)
    raise AssertionError(f"client {cid} not in nginx's access log")


def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def hops(client: PageClient, since: float = 0.0) -> list[float]:
    return [e["t1"] for t, e in client.emotions if t >= since]


@pytest.fixture(scope="module")
def stack(random_weights, tmp_path_factory):
    if not (NGINX and REDIS):
        pytest.skip("nginx and redis-server are not installed")
    env = {"SER_INFERENCE_WORKERS": "1",
           "SER_STREAMS_PER_CLIENT": "64",  # every test client is 127.0.0.1
           "SER_THREADS": "32"}
    with Stack(apps=2, weights=random_weights, run_dir=tmp_path_factory.mktemp("stack"), env=env) as s:
        yield s


@needs_servers
def test_streams_spread_over_both_backends_and_any_process_can_emit(stack):
    clients = [PageClient(stack.url) for _ in range(CLIENTS)]
    try:
        for c in clients:
            c.connect()  # polling first, then the upgrade: both must reach the same backend
            c.start_streaming()
        wait_until(lambda: all(len(c.emotions) >= 2 for c in clients), 20, "emotion events on every client")
        where = [backend_of(stack, c.cid) for c in clients]
        assert set(where) == {0, 1}, f"all clients on one backend: {where}"
        # Each backend holds exactly the streams nginx sent it, started once each.
        active = [requests.get(b.url + "/healthz", timeout=5).json()["active_streams"] for b in stack.backends]
        assert active == [where.count(0), where.count(1)]
        # An outside process, write-only on the Redis message queue, reaches clients of both backends.
        targets = [clients[where.index(0)], clients[where.index(1)]]
        emitter = ("import sys\nfrom flask_socketio import SocketIO\n"
                   "io = SocketIO(message_queue=sys.argv[1], channel='ser-socketio')\n"
                   "for sid in sys.argv[2:]:\n"
                   "    io.emit('notice', {'to': sid}, to=sid, namespace='/stream')\n")
        subprocess.run([sys.executable, "-c", emitter, stack.redis_url, *[c.sid for c in targets]],
                       check=True, timeout=60, cwd=ROOT)
        for c in targets:
            wait_until(lambda c=c: c.notices, 10, "the outside emit did not arrive")
            assert c.notices == [{"to": c.sid}]
        assert all(not c.notices for c in clients if c not in targets)
    finally:
        summaries = [c.finish() for c in clients]
    for c, summary in zip(clients, summaries):
        assert not c.errors, c.errors
        assert [a["ok"] for a in c.acks] == [True]
        assert summary is not None and summary["duration"] >= 1.0
        t1 = hops(c)
        assert t1[:2] == [0.5, 1.0] and all(b > a for a, b in zip(t1, t1[1:]))


@needs_servers
def test_a_killed_backend_s_clients_are_served_again_and_the_others_notice_nothing(stack):
    clients = [PageClient(stack.url) for _ in range(CLIENTS)]
    try:
        for c in clients:
            c.connect()
            c.start_streaming()
        wait_until(lambda: all(len(c.emotions) >= 2 for c in clients), 20, "emotion events on every client")
        where = [backend_of(stack, c.cid) for c in clients]
        assert set(where) == {0, 1}, f"all clients on one backend: {where}"
        victim = 0
        old_pid = stack.backend_pids[victim]
        killed_at = time.monotonic()
        stack.kill_backend(victim, signal.SIGKILL)
        victims = [c for c, w in zip(clients, where) if w == victim]
        others = [c for c, w in zip(clients, where) if w != victim]

        def served_again(c):
            return any(t > killed_at and len(c.acks) >= 2 for t, _ in c.emotions)

        wait_until(lambda: all(served_again(c) for c in victims), FAILOVER_S + 5, "victims not served again")
        for c in victims:
            assert c.disconnects and c.disconnects[0] > killed_at
            assert [a["ok"] for a in c.acks] == [True, True], c.acks  # resumed with a new start
            first = min(t for t, _ in c.emotions if t > c.connects[-1])
            assert first - killed_at <= FAILOVER_S, f"served again after {first - killed_at:.1f} s"
            # The resumed session counts from its own start.
            assert hops(c, since=c.connects[-1])[0] == 0.5
        time.sleep(1.0)  # the others keep streaming through the failover and the restart
        for c in others:
            assert not c.disconnects and len(c.connects) == 1 and len(c.acks) == 1
            assert hops(c, since=killed_at + 1.0), "the other backend's clients stopped receiving"
    finally:
        summaries = [c.finish() for c in clients]
    for c, summary in zip(clients, summaries):
        assert not c.errors, c.errors
        assert summary is not None and summary["duration"] > 0
    # The stack marked it down, restarted it, and put it back once ready.
    stack.wait_all_up(timeout_s=120)
    assert stack.backend_pids[victim] != old_pid
    assert requests.get(stack.backends[victim].url + "/readyz", timeout=5).status_code == 200


# -- the deployment recipe ----------------------------------------------------------------------

def nginx_t(conf: Path, prefix: Path):
    res = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


@needs_servers
def test_the_stack_s_rendered_nginx_config_passes_nginx_t(stack):
    nginx_t(stack.nginx_conf, stack.run_dir)
    text = stack.nginx_conf.read_text()
    assert "hash $ser_client consistent" in text and text.count("max_fails=1") == 4
    assert not re.search(r"@[A-Z_]+@", text)


def local_compose_nginx(tmp: Path, backends: list[str], http_port: int, https_port: int) -> Path:
    """deploy/nginx/compose.conf made runnable here: the image's paths moved into ``tmp``, ``app:8000``
    replaced by ``backends``, ports 80/443 by free ones, IPv6 listeners dropped; wrapped in an
    nginx.conf like the official image's (which includes conf.d/*.conf inside http)."""
    from scripts.stack import _self_signed_cert

    for name in ("ser-http.conf", "ser-server.conf"):
        (tmp / name).write_text((ROOT / "deploy" / "nginx" / name).read_text())
    _self_signed_cert(tmp / "certs", ["localhost", "127.0.0.1"])
    conf = "\n".join(line for line in (ROOT / "deploy" / "nginx" / "compose.conf").read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    conf = conf.replace("/etc/nginx/ser/", f"{tmp}/").replace("/etc/nginx/certs/", f"{tmp}/certs/")
    conf = conf.replace("/var/log/nginx/", f"{tmp}/")
    conf = re.sub(r"server app:8000([^;]*);", lambda m: " ".join(f"server {b}{m.group(1)};" for b in backends), conf)
    conf = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", conf)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    assert "app:8000" not in conf and "/etc/nginx" not in conf
    (tmp / "default.conf").write_text(conf)
    main = tmp / "nginx.conf"
    temp = " ".join(f"{k}_temp_path {tmp}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main.write_text(f"pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;\n"
                    + ("user root;\n" if os.geteuid() == 0 else "")
                    + f"events {{}}\nhttp {{ access_log {tmp}/main-access.log; {temp}\n"
                    f"include {tmp}/default.conf; }}\n")
    return main


@needs_servers
def test_compose_nginx_config_terminates_tls_in_front_of_the_backends(stack, tmp_path):
    pytest.importorskip("cryptography")
    http_port, https_port = free_port(), free_port()
    conf = local_compose_nginx(tmp_path, [b.address for b in stack.backends], http_port, https_port)
    nginx_t(conf, tmp_path)
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log"),
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"https://127.0.0.1:{https_port}"
        wait_until(lambda: _answers(base + "/healthz"), 10, "nginx (compose config) did not start")
        res = requests.get(f"http://127.0.0.1:{http_port}/x?y=1", allow_redirects=False, timeout=5)
        assert res.status_code == 301 and res.headers["Location"] == "https://127.0.0.1/x?y=1"  # to 443
        page = requests.get(base + "/", verify=str(tmp_path / "certs" / "cert.pem"), timeout=10)
        assert page.status_code == 200 and "Content-Security-Policy" in page.headers
        assert "nginx/" not in page.headers.get("Server", "")  # no versions
        assert requests.get(base + "/metrics", verify=False, timeout=5).status_code == 404
        # An upload over client_max_body_size is refused by nginx before the app reads a byte.
        assert _status_of_announced_upload(https_port, 27 << 20) == 413
        client = PageClient(base, ca_file=str(tmp_path / "certs" / "cert.pem"))  # polling, then wss
        client.connect()
        client.start_streaming()
        wait_until(lambda: len(client.emotions) >= 2, 20, "no emotion over wss")
        summary = client.finish()
        assert summary is not None and not client.errors and client.acks[0]["ok"]
        upgraded = re.compile(rf"GET /socket\.io/ 101 .* c={client.cid} ")  # logged once the socket closes
        wait_until(lambda: upgraded.search((tmp_path / "access.log").read_text()), 10, "no WebSocket over TLS")
    finally:
        proc.terminate()
        proc.wait(10)


def _status_of_announced_upload(port: int, length: int) -> int:
    """Status nginx answers to a POST that announces ``length`` bytes and sends none of them (TLS)."""
    import socket
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: audio/wav\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())
        return int(sock.recv(4096).split()[1])


def _answers(url: str) -> bool:
    try:
        return requests.get(url, verify=False, timeout=2).status_code == 200
    except requests.RequestException:
        return False
