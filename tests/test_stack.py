"""The multi-process stack on real servers: redis-server + nginx + two gunicorn app processes
(scripts/stack.py), python-socketio clients that behave like the page, and the deployment recipe
(nginx configs under ``nginx -t`` and over TLS, compose file and Dockerfile checked as far as this
machine allows: no container engine here)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
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
CLIENTS = 6  # at least; more join until each backend has two
KILLED: dict[int, int] = {}  # backend index -> pid of the process the failover test killed
MAX_CLIENTS = 20

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


def spread_clients(stack: Stack, clients: list) -> list[int]:
    """Connect clients that stream, each with its own ?c=, into ``clients`` until there are CLIENTS
    and each backend has two (a random c lands on either; all on one would mean no spreading).
    Returns the index of each one's backend."""
    where: list[int] = []
    while len(clients) < CLIENTS or min(where.count(i) for i in range(len(stack.backends))) < 2:
        assert len(clients) < MAX_CLIENTS, f"clients not spread over the backends: {where}"
        c = PageClient(stack.url)
        c.connect()  # polling first, then the upgrade: both must reach the same backend
        c.start_streaming()
        clients.append(c)
        where.append(backend_of(stack, c.cid))
    return where


def kill(stack: Stack, index: int, how: str) -> float:
    """SIGKILL app process ``index``: its whole process group ("group") or only gunicorn's worker
    ("worker", the master stays); returns when, on the monotonic clock."""
    if how == "group":
        stack.kill_backend(index, signal.SIGKILL)
    else:
        os.kill(min(stack.backends[index].worker_pids()), signal.SIGKILL)
    return time.monotonic()


def served_again_after(client: PageClient, killed_at: float) -> float | None:
    """Seconds from the kill to the first ``emotion`` of the stream the client resumed after it."""
    if not client.connects or client.connects[-1] < killed_at:
        return None
    after = [t for t, _ in client.emotions if t > client.connects[-1]]
    return min(after) - killed_at if after else None


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
    with Stack(apps=2, weights=random_weights, run_dir=tmp_path_factory.mktemp("stack"), extra_env=env) as s:
        yield s


@needs_servers
def test_streams_spread_over_both_backends_and_any_process_can_emit(stack):
    clients: list[PageClient] = []
    try:
        where = spread_clients(stack, clients)
        wait_until(lambda: all(len(c.emotions) >= 2 for c in clients), 20, "emotion events on every client")
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


# -- the nginx configs -----------------------------------------------------------------------------

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


def compose() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())


def defaults(text: str) -> str:
    """Compose's ``${VAR:-default}`` interpolation, with every variable unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def make_compose_certs(folder: Path) -> Path:
    """Run the compose file's "certs" command here, writing into ``folder`` instead of /certs."""
    service = compose()["services"]["certs"]
    command = [arg.replace("/certs", str(folder)) for arg in service["command"]]
    hosts = defaults(service["environment"]["SER_CERT_HOSTS"])
    subprocess.run([sys.executable if command[0] == "python" else command[0], *command[1:]], check=True,
                   cwd=ROOT, timeout=120, env={**os.environ, "SER_CERT_HOSTS": hosts})
    return folder


def local_compose_nginx(tmp: Path, backends: list[str], http_port: int, https_port: int) -> Path:
    """deploy/nginx/compose.conf made runnable here: the image's paths moved into ``tmp`` (certificate
    from the compose file's own "certs" command), ``app:8000`` replaced by ``backends``, ports 80/443
    by free ones; wrapped in an nginx.conf like the official image's (conf.d/*.conf inside http)."""
    for name in ("ser-http.conf", "ser-server.conf"):
        (tmp / name).write_text((ROOT / "deploy" / "nginx" / name).read_text())
    make_compose_certs(tmp / "certs")
    conf = "\n".join(line for line in (ROOT / "deploy" / "nginx" / "compose.conf").read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    conf = conf.replace("/etc/nginx/ser/", f"{tmp}/").replace("/etc/nginx/certs/", f"{tmp}/certs/")
    conf = conf.replace("/var/log/nginx/", f"{tmp}/")
    conf = re.sub(r"server app:8000([^;]*);", lambda m: " ".join(f"server {b}{m.group(1)};" for b in backends), conf)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    assert "app:8000" not in conf and "/etc/nginx" not in conf and "listen 80" not in conf
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
    pytest.importorskip("yaml")
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


# -- failover (the restart is checked by the last test: the recipe's tests run meanwhile) ----------

@needs_servers
def test_a_killed_backend_s_clients_are_served_again_and_the_others_notice_nothing(stack):
    clients: list[PageClient] = []
    try:
        where = spread_clients(stack, clients)
        wait_until(lambda: all(len(c.emotions) >= 2 for c in clients), 20, "emotion events on every client")
        victim = 0
        KILLED[victim] = stack.backend_pids[victim]  # its restart is checked last, while other tests run
        killed_at = kill(stack, victim, "group")
        victims = [c for c, w in zip(clients, where) if w == victim]
        others = [c for c, w in zip(clients, where) if w != victim]
        wait_until(lambda: all(served_again_after(c, killed_at) for c in victims), FAILOVER_S + 5,
                   "a killed backend's clients were not served again")
        for c in victims:
            assert c.disconnects and c.disconnects[0] > killed_at
            assert [a["ok"] for a in c.acks] == [True, True], c.acks  # resumed with a new start
            assert served_again_after(c, killed_at) <= FAILOVER_S, served_again_after(c, killed_at)
            # The resumed session counts from its own start.
            assert hops(c, since=c.connects[-1])[0] == 0.5
        print(f"failover: {len(victims)} clients served again after "
              f"{[round(served_again_after(c, killed_at), 2) for c in victims]} s")
        time.sleep(1.0)  # the others keep streaming through the failover and the restart
        for c in others:
            assert not c.disconnects and len(c.connects) == 1 and len(c.acks) == 1
            assert hops(c, since=killed_at + 1.0), "the other backend's clients stopped receiving"
    finally:
        summaries = [c.finish() for c in clients]
    for c, summary in zip(clients, summaries):
        assert not c.errors, c.errors
        assert summary is not None and summary["duration"] > 0


# -- the container recipe, as far as a machine without a container engine allows -------------------

def test_compose_file_wires_replicas_redis_and_tls_nginx():
    pytest.importorskip("yaml")
    spec = compose()
    services = spec["services"]
    assert set(services) >= {"app", "redis", "nginx", "certs"}
    app, nginx = services["app"], services["nginx"]
    assert app["build"]["context"] == ".." and (ROOT / app["build"]["dockerfile"]).is_file()
    assert app["environment"]["SER_REDIS_URL"] == "redis://redis:6379/0"
    assert app["environment"]["SER_TRUSTED_PROXIES"] == "1"
    assert app["environment"]["SER_BIND"] == "0.0.0.0:8000" and app["deploy"]["replicas"] >= 2
    assert [name for name, s in services.items() if "ports" in s] == ["nginx"]  # Redis and apps stay inside
    assert nginx["depends_on"]["app"]["condition"] == "service_healthy"
    assert nginx["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    # Every file a service mounts exists, and nginx's includes and certificate lie in its mounts.
    mounts = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target = defaults(volume).split(":")[:2]
            if source.startswith("."):
                assert (ROOT / "deploy" / source).exists(), source
                mounts[target] = ROOT / "deploy" / source
    conf = mounts["/etc/nginx/conf.d/default.conf"].read_text()
    for include in re.findall(r"include (/etc/nginx/ser/\S+);", conf):
        assert (mounts["/etc/nginx/ser"] / Path(include).name).is_file(), include
    volumes = [defaults(v).split(":") for v in nginx["volumes"]]
    cert_mount = next(target for source, target, *_ in volumes if target.startswith("/etc/nginx/certs"))
    assert [source for source, target, *_ in volumes if target == cert_mount] == ["certs"]
    assert "certs" in spec["volumes"]  # the generated certificate's named volume, shared with "certs"
    assert [defaults(v).split(":")[:2] for v in services["certs"]["volumes"]] == [["certs", "/certs"]]
    assert all(path.startswith(cert_mount + "/") for path in re.findall(r"ssl_certificate(?:_key)? (\S+);", conf))
    redis_conf = mounts["/usr/local/etc/redis/redis.conf"].read_text()
    assert re.search(r"^maxmemory \d+mb$", redis_conf, re.M) and re.search(r'^save ""$', redis_conf, re.M)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M)
            if not m.group(0).startswith("#")]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` (relative) out of the build context: the last pattern that
    matches the path or one of its parent folders decides (Docker's rule; * stays inside a folder)."""
    def regex(pattern: str) -> re.Pattern:
        out = re.escape(pattern.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        return re.compile(out.replace(r"\?", "[^/]") + "$")

    rules = [(line.startswith("!"), regex(line.lstrip("!")))
             for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for keep, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            excluded = not keep
    return excluded


def image_files() -> list[str]:
    """Paths of the repository the final image COPYs (not those from the vendor stage)."""
    out = []
    for op, args in dockerfile_instructions():
        if op == "COPY" and "--from" not in args:
            out += args.split()[:-1]
    return out


def test_dockerfile_cpu_torch_non_root_healthcheck_and_its_files_in_the_context():
    steps = dockerfile_instructions()
    ops = [op for op, _ in steps]
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in runs
    assert runs.index("torch==2.13.0") < runs.index("pip install -e .")  # never CUDA torch from PyPI
    assert "ffmpeg" in runs
    user = [args for op, args in steps if op == "USER"]
    assert user and user[-1] not in ("root", "0") and ops.index("USER") > ops.index("RUN", ops.index("FROM", 1))
    assert max(i for i, op in enumerate(ops) if op == "RUN") < ops.index("USER")  # nothing runs as root after
    healthcheck = next(args for op, args in steps if op == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    cmd = next(args for op, args in reversed(steps) if op == "CMD")
    assert cmd == '["gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]'
    for path in image_files():
        assert (ROOT / path).exists(), path
        assert not dockerignored(path), f"{path} is left out of the build context by .dockerignore"
        files = [path] if (ROOT / path).is_file() else [str(p.relative_to(ROOT)) for p in (ROOT / path).rglob("*")
                                                       if p.is_file() and "__pycache__" not in p.parts]
        assert files and not [f for f in files if dockerignored(f)], path
    assert dockerignored("reports/x.png") and dockerignored(".venv/bin/python") and dockerignored("certs/key.pem")
    assert dockerignored("webapp/__pycache__/x.pyc")


@contextlib.contextmanager
def serving(command: list[str], url: str, log: Path, env: dict, cwd: Path, timeout_s: float = 120):
    """Run ``command`` in ``cwd`` until ``url``/healthz answers; stop it afterwards."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        wait_until(lambda: proc.poll() is not None or _answers(url + "/healthz"), timeout_s,
                   f"no answer:\n{log.read_text()[-3000:]}")
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_the_image_s_files_alone_run_the_app(tmp_path, random_weights):
    """The files the Dockerfile copies (and the vendor stage's node_modules), and nothing else, run
    the image's CMD; its HEALTHCHECK command passes while the app answers and fails once it stops.
    (The small random model stands in for the shipped one, whose start-up takes half a minute.)"""
    app_dir = tmp_path / "app"
    for path in image_files() + ["node_modules"]:
        src, dst = ROOT / path, app_dir / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    port = free_port()
    steps = dockerfile_instructions()
    check = json.loads(next(args for op, args in steps if op == "HEALTHCHECK").split("CMD", 1)[1])
    check = [sys.executable if a == "python" else a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in check]
    cmd = [sys.executable, "-m", *json.loads(next(args for op, args in reversed(steps) if op == "CMD"))]
    registry = json.loads((app_dir / "weights" / "registry.json").read_text())
    assert (app_dir / "weights" / registry["models"][registry["default"]]["file"]).is_file()
    env = {"SER_BIND": f"127.0.0.1:{port}", "SER_INFERENCE_MODE": "thread", "SER_INFERENCE_WORKERS": "1",
           "SER_WEIGHTS": str(random_weights), "PYTHONPATH": "", "HOME": str(tmp_path)}
    with serving(cmd, f"http://127.0.0.1:{port}", tmp_path / "app.log", env, app_dir):
        assert subprocess.run(check, cwd=app_dir, timeout=30).returncode == 0
        res = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert res.status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/vendor/socket.io-client/dist/socket.io.min.js",
                            timeout=10).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()["ok"]
    assert subprocess.run(check, cwd=app_dir, timeout=30, capture_output=True).returncode != 0


# -- last ------------------------------------------------------------------------------------------

@needs_servers
def test_the_killed_backend_is_restarted_and_receives_clients_again(stack):
    """Runs last: the failover test's victim restarted meanwhile (run alone, it kills one itself)."""
    if not KILLED:
        KILLED[0] = stack.backend_pids[0]
        kill(stack, 0, "group")
        wait_until(lambda: stack.backends[0].state != "up", 5, "the dead backend was not marked down")
    stack.wait_ready(timeout_s=120)
    for index, old_pid in KILLED.items():
        assert stack.backend_pids[index] != old_pid
        assert requests.get(stack.backends[index].url + "/readyz", timeout=5).status_code == 200
    clients: list[PageClient] = []
    try:
        spread_clients(stack, clients)  # nginx sends clients to the restarted one again
    finally:
        for c in clients:
            c.finish()


def failover_drill(argv=None):
    """Repeat the failover test's kill and time it:
    ``python tests/test_stack.py --kill group|worker --runs 4`` (two app processes, the small random
    model unless --weights); prints one JSON line per run."""
    import argparse
    import logging
    import tempfile

    parser = argparse.ArgumentParser(description=failover_drill.__doc__)
    parser.add_argument("--kill", choices=("group", "worker"), default="group")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weights", help="default: a small random model, as in the tests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("socketio").setLevel(logging.WARNING)
    weights = args.weights or _random_weights(Path(tempfile.mkdtemp(prefix="ser-weights-")))
    env = {"SER_INFERENCE_WORKERS": "1", "SER_STREAMS_PER_CLIENT": "64", "SER_THREADS": "32"}
    with Stack(apps=2, weights=weights, extra_env=env) as stack:
        for run in range(args.runs):
            stack.wait_ready()
            clients: list[PageClient] = []
            try:
                where = spread_clients(stack, clients)
                wait_until(lambda: all(len(c.emotions) >= 2 for c in clients), 30, "emotion events")
                killed_at = kill(stack, where[0], args.kill)
                victims = [c for c, w in zip(clients, where) if w == where[0]]
                wait_until(lambda: all(served_again_after(c, killed_at) for c in victims), 60, "served again")
                time.sleep(1.0)
                others = [c for c, w in zip(clients, where) if w != where[0]]
                print(json.dumps({
                    "run": run, "kill": args.kill, "victims": len(victims),
                    "served_again_s": [round(served_again_after(c, killed_at), 3) for c in victims],
                    "others": len(others), "others_disconnected": sum(bool(c.disconnects) for c in others),
                }), flush=True)
            finally:
                for c in clients:
                    c.finish()


def _random_weights(folder: Path) -> Path:
    """tests/conftest.py's random_weights, outside pytest."""
    from ser_model.checkpoint import register, save_checkpoint
    from ser_model.model import ModelConfig, build_model

    cfg = ModelConfig(channels=(16, 32, 64, 128))
    register(folder, "m", save_checkpoint(folder / "m.pt", build_model(cfg), cfg))
    return folder


if __name__ == "__main__":
    failover_drill()
