"""One command for the whole stack on one machine: redis-server, nginx and K gunicorn app processes.

    python scripts/stack.py [--apps K] [--port 8080] [--weights weights] [--run-dir DIR] [--https]

The config files in deploy/ are rendered into the run directory (a new temporary one by default),
never into the repository or /etc, and every server runs unprivileged from there on loopback ports.
The command waits until every app process answers ``/readyz``, prints the URL, then supervises: an
app process that dies is marked ``down`` in nginx at once (nginx reloads; open connections stay),
restarted with backoff, and marked up again once ready. Ctrl-C or SIGTERM stops everything.
See docs/deploy.md.

As a library (tests, bench/)::

    from scripts.stack import Stack
    with Stack(apps=2, weights="weights") as stack:   # returns once every app process is ready
        stack.url, stack.redis_url, stack.backend_pids
        stack.kill_backend(0)                          # SIGKILL one app's process group
        stack.wait_ready()                             # ... until it was restarted and is ready
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"  # Redis and the app processes: only nginx may face the network
DEPLOY = ROOT / "deploy"
NGINX_TEMPLATE = DEPLOY / "nginx" / "stack.conf.in"
NGINX_INCLUDES = (DEPLOY / "nginx" / "ser-http.conf", DEPLOY / "nginx" / "ser-server.conf")
REDIS_CONF = DEPLOY / "redis.conf"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"

READY_TIMEOUT_S = 300  # importing torch and loading the model, K processes at once on a busy machine
SERVICE_TIMEOUT_S = 15  # redis-server or nginx answering
PROBE_TIMEOUT_S = 1.0
TICK_S = 0.2  # supervision period: how soon a dead app process is marked down
PROBE_EVERY_S = 0.5  # each app's prober: /readyz while it is down, /healthz while it is up
LIVENESS_TIMEOUT_S = 3.0
LIVENESS_DEADLINE_S = 10.0  # an app that is up but has not answered /healthz for this long is marked down
BACKOFF_S = (1, 2, 4, 8, 16, 30)  # delay before the n-th consecutive restart of one app process
STABLE_S = 60  # an app process up this long starts its backoff again from the beginning
RELOAD_TIMEOUT_S = 2.0  # nginx starting the workers of a new configuration
STOP_TIMEOUT_S = 15  # gunicorn's graceful_timeout (10 s) plus a margin

log = logging.getLogger("stack")


def find_binary(name: str) -> str | None:
    """``name`` on PATH or in the sbin folders (Debian installs nginx in /usr/sbin)."""
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_status(url: str, timeout_s: float = PROBE_TIMEOUT_S, cafile: str | None = None) -> int | None:
    """HTTP status of a GET, or None when nothing answered in time (``cafile``: trust this certificate)."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as res:
            return res.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``@NAME@`` placeholders; a placeholder left unfilled is an error."""
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    if "@" in "".join(line.split("#")[0] for line in template.splitlines()):
        raise ValueError("unfilled @...@ placeholder in the template")
    return template


class Service:
    """One server process in its own process group, its output appended to a log file."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict | None = None):
        self.name, self.command, self.log_path, self.env = name, command, log_path, env
        self.proc: subprocess.Popen | None = None
        self.failures = 0  # consecutive deaths, for the backoff
        self.restart_at: float | None = None
        self.up_since: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self):
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        self.restart_at, self.up_since = None, None

    def respawn(self):
        """Start again, after killing whatever the last run left in its group (an orphaned nginx
        worker or model lane would hold its port or memory)."""
        self.send(signal.SIGKILL, group=True)
        self.spawn()

    def send(self, sig: int, group: bool = False):
        """Send ``sig`` to the process (or its whole group); a process already gone is fine."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig) if group else self.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S):
        """``sig``, then SIGKILL to the whole group after ``timeout_s`` (and to any child left behind)."""
        if self.proc is None:
            return
        self.send(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killed", self.name, timeout_s)
        self.send(signal.SIGKILL, group=True)
        self.proc.wait()

    def children(self) -> set[int]:
        """Pids of the process's children (Linux /proc; empty elsewhere)."""
        if not self.alive:
            return set()
        try:
            return {int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()}
        except OSError:
            return set()

    def schedule_restart(self, now: float) -> float:
        """Plan the next start after the backoff; returns the delay."""
        if self.up_since is not None and now - self.up_since >= STABLE_S:
            self.failures = 0
        delay = BACKOFF_S[min(self.failures, len(BACKOFF_S) - 1)]
        self.failures += 1
        self.restart_at, self.up_since = now + delay, None
        return delay

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Backend(Service):
    """One app process: gunicorn with deploy/gunicorn.conf.py (one worker) on a loopback port.

    ``state`` is what nginx is told: "up" (in the upstream list) or "down" (starting, dead, or
    restarting; marked ``down``, so its clients are hashed onto the others).
    """

    def __init__(self, index: int, host: str, port: int, env: dict, log_path: Path):
        command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "wsgi:app"]
        if _gunicorn_has("control_socket"):  # newer gunicorn: one per master, not all at ~/.gunicorn
            ctl = log_path.with_suffix(".ctl")
            command[-1:-1] = ["--control-socket", str(ctl)] if len(str(ctl)) < 100 else ["--no-control-socket"]
        super().__init__(f"app{index}", command, log_path, {**env, "SER_BIND": f"{host}:{port}"})
        self.index, self.host, self.port = index, host, port
        self.state = "down"
        self.workers: set[int] = set()  # gunicorn's worker when it was marked up
        self.down_at = 0.0  # when it was last marked down
        self.ready_at = 0.0  # last 200 from /readyz (prober thread)
        self.answered_at = 0.0  # last answer from /healthz (prober thread)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def worker_pids(self) -> set[int]:
        """gunicorn's workers: the children of its master process."""
        return self.children()

    def ready(self) -> bool:
        return http_status(self.url + "/readyz") == 200

    def probe(self, stopping: threading.Event):
        """The prober thread: HTTP checks off the supervision loop, so a hung app delays no one."""
        while not stopping.wait(PROBE_EVERY_S):
            if not self.alive:
                continue
            if self.state == "up":
                if http_status(self.url + "/healthz", LIVENESS_TIMEOUT_S) is not None:
                    self.answered_at = time.monotonic()
            elif self.ready():
                self.ready_at = time.monotonic()


class Stack:
    """redis-server + nginx + ``apps`` gunicorn app processes on loopback, supervised.

    Parameters
    ----------
    apps : number of app processes (each one gunicorn worker holding its streams and model lanes).
    port : nginx's port (0: a free one).
    weights : the app's SER_WEIGHTS (default: the app's default, weights/).
    run_dir : where config files, logs, pid and temp files go (default: a new temporary folder).
    host : nginx's interface; Redis and the app processes always listen on loopback.
    extra_env : extra environment of the app processes (``SER_*`` settings), applied last.
    https : nginx serves TLS with a self-signed certificate made in the run directory.
    """

    def __init__(self, apps: int = 2, port: int = 0, weights: str | Path | None = None,
                 run_dir: str | Path | None = None, host: str = "127.0.0.1", extra_env: dict | None = None,
                 https: bool = False):
        if apps < 1:
            raise ValueError("apps must be at least 1")
        self.nginx_bin, self.redis_bin = find_binary("nginx"), find_binary("redis-server")
        missing = [n for n, b in (("nginx", self.nginx_bin), ("redis-server", self.redis_bin)) if not b]
        if missing:
            raise FileNotFoundError(f"not installed: {', '.join(missing)} (scripts/install.sh --dev)")
        self.host, self.port, self.https = host, port or free_port(host), https
        self.run_dir = Path(run_dir).resolve() if run_dir else Path(tempfile.mkdtemp(prefix="ser-stack-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port(LOOPBACK)
        self.redis_url = f"redis://{LOOPBACK}:{self.redis_port}/0"
        # The cores shared out (unless SER_INFERENCE_WORKERS is set), then the stack's own wiring.
        app_env = {"SER_INFERENCE_WORKERS": str(max(1, _cores() // apps)), **os.environ,
                   "SER_REDIS_URL": self.redis_url, "SER_TRUSTED_PROXIES": "1"}
        if weights:
            app_env["SER_WEIGHTS"] = str(Path(weights).resolve())
        app_env.update(extra_env or {})
        self.backends = [Backend(i, LOOPBACK, free_port(LOOPBACK), app_env, self.run_dir / f"app{i}.log")
                         for i in range(apps)]
        self.redis = Service("redis", [self.redis_bin, str(self.run_dir / "redis.conf"), "--port",
                                       str(self.redis_port), "--dir", str(self.run_dir)],
                             self.run_dir / "redis.log")
        self.nginx = Service("nginx", [self.nginx_bin, "-p", str(self.run_dir), "-c", str(self.nginx_conf),
                                       "-e", str(self.run_dir / "nginx-error.log"), "-g", "daemon off;"],
                             self.run_dir / "nginx.log")
        self._lock = threading.RLock()  # a supervision step vs. stop() from another thread
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    # -- public ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """nginx's URL (on loopback when it listens on every interface)."""
        host = LOOPBACK if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}"

    @property
    def nginx_conf(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def backend_pids(self) -> list[int | None]:
        """gunicorn master pid of each app process (also its process group)."""
        return [b.pid for b in self.backends]

    def pids(self) -> list[int]:
        """Every server process started (Redis, nginx's master, each gunicorn master): the roots of
        the process trees the stack runs, e.g. to sum their CPU time."""
        return [s.pid for s in (self.redis, self.nginx, *self.backends) if s.alive]

    def start(self, timeout_s: float = READY_TIMEOUT_S, wait_ready: bool = True) -> str:
        """Start everything and supervise; returns the URL. With ``wait_ready``, returns once every app
        process is ready; without, at once (nginx sends to each app as soon as it is: ``wait_ready()``)."""
        try:
            self._start_redis()
            for b in self.backends:
                b.spawn()
            if wait_ready:
                self._wait_backends_ready(time.monotonic() + timeout_s)
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        for b in self.backends:
            threading.Thread(target=b.probe, args=(self._stopping,), name=f"stack-probe-{b.name}", daemon=True).start()
        self._supervisor = threading.Thread(target=self._supervise, name="stack-supervisor", daemon=True)
        self._supervisor.start()
        log.info("stack %s: %s (apps %s, redis %s, run dir %s)", "ready" if wait_ready else "started", self.url,
                 " ".join(b.address for b in self.backends), self.redis_url, self.run_dir)
        return self.url

    def stop(self):
        """Stop supervising, then nginx (clients are disconnected), the app processes and Redis."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        with self._lock:
            self.nginx.stop(signal.SIGTERM, timeout_s=5)  # fast shutdown: closes open WebSockets
            for b in self.backends:
                b.send(signal.SIGTERM)  # all at once: graceful stops run in parallel
            for b in self.backends:
                b.stop(signal.SIGTERM)
            self.redis.stop(signal.SIGTERM, timeout_s=5)

    def kill_backend(self, index: int, sig: int = signal.SIGKILL):
        """Send ``sig`` to app process ``index``'s whole group (master, worker, model lanes):
        what a crash of that process looks like to nginx and its clients."""
        self.backends[index].send(sig, group=True)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S):
        """Block until every app process is up in nginx (after a start without waiting, or restarts)."""
        deadline = time.monotonic() + timeout_s
        while any(b.state != "up" for b in self.backends):
            if time.monotonic() > deadline:
                raise TimeoutError("app processes not up: " + self._states())
            time.sleep(TICK_S)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- starting -------------------------------------------------------------------------------
    def _start_redis(self):
        shutil.copyfile(REDIS_CONF, self.run_dir / "redis.conf")
        self.redis.spawn()
        _wait_for(lambda: _redis_ping(LOOPBACK, self.redis_port), SERVICE_TIMEOUT_S, self.redis)

    def _wait_backends_ready(self, deadline: float):
        pending = list(self.backends)
        while pending:
            for b in list(pending):
                if not b.alive:
                    raise RuntimeError(f"{b.name} exited with {b.proc.returncode} while starting:\n{b.tail()}")
                if b.ready():
                    self._mark_up(b, reload=False)
                    pending.remove(b)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"{pending[0].name} not ready in time:\n{pending[0].tail()}")
            time.sleep(0.3)

    def _start_nginx(self):
        (self.run_dir / "nginx-tmp").mkdir(exist_ok=True)
        for path in NGINX_INCLUDES:
            shutil.copyfile(path, self.run_dir / path.name)
        if self.https:
            _self_signed_cert(self.run_dir / "certs", list(dict.fromkeys(["localhost", LOOPBACK, self.host])))
        self._write_nginx_conf()
        self.nginx.spawn()
        cafile = str(self.run_dir / "certs" / "cert.pem") if self.https else None
        # Any answer will do: with no app process ready yet, nginx itself answers 502.
        _wait_for(lambda: http_status(self.url + "/healthz", cafile=cafile) is not None, SERVICE_TIMEOUT_S,
                  self.nginx)

    def _write_nginx_conf(self):
        servers = "\n".join(f"        server {b.address} max_fails=1 fail_timeout=5s"
                            f"{' down' if b.state != 'up' else ''};" for b in self.backends)
        text = render(NGINX_TEMPLATE.read_text(), {
            # As root, nginx would switch its workers to a user that may not reach the run directory.
            "USER": "user root;" if os.geteuid() == 0 else "",
            "WORKERS": "auto", "RUN_DIR": str(self.run_dir), "SERVERS": servers,
            "LISTEN": f"{_listen_address(self.host)}:{self.port}{' ssl' if self.https else ''}",
            "TLS": (f"ssl_certificate {self.run_dir}/certs/cert.pem;\n"
                    f"        ssl_certificate_key {self.run_dir}/certs/key.pem;\n"
                    "        ssl_protocols TLSv1.2 TLSv1.3;") if self.https else "",
        })
        tmp = self.nginx_conf.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.nginx_conf)

    # -- supervising ----------------------------------------------------------------------------
    def _supervise(self):
        while not self._stopping.wait(TICK_S):
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._tick(time.monotonic())
                except Exception:  # supervision must outlive any surprise
                    log.exception("supervision step failed")

    def _tick(self, now: float):
        for service in (self.redis, self.nginx):
            self._keep_running(service, now)
        for b in self.backends:
            self._check_backend(b, now)

    def _keep_running(self, service: Service, now: float):
        """Redis and nginx: restarted (with backoff) when they exit."""
        if service.alive:
            if service.up_since is None:
                service.up_since = now
            return
        if service.restart_at is None:
            delay = service.schedule_restart(now)
            log.error("%s exited with %s; restart in %s s:\n%s", service.name, service.proc.returncode,
                      delay, service.tail(800))
        elif now >= service.restart_at:
            log.info("restarting %s", service.name)
            if service is self.nginx:
                self._write_nginx_conf()
            service.respawn()

    def _check_backend(self, b: Backend, now: float):
        if b.state == "up":
            if not b.alive:
                self._mark_down(b, f"exited with {b.proc.returncode}")
            elif not b.worker_pids() >= b.workers:
                self._mark_down(b, "its gunicorn worker died (the master starts another)")
            elif now - b.answered_at > LIVENESS_DEADLINE_S:
                self._mark_down(b, f"no answer to /healthz for {LIVENESS_DEADLINE_S:.0f} s")
            else:
                return
        if b.alive:
            if b.ready_at > b.down_at:
                self._mark_up(b)
            return
        if b.restart_at is None:
            log.warning("%s: restart in %s s", b.name, b.schedule_restart(now))
        elif now >= b.restart_at:
            log.info("%s: restarting on %s", b.name, b.address)
            b.respawn()

    def _mark_down(self, b: Backend, why: str):
        log.warning("%s down: %s", b.name, why)
        b.state, b.down_at = "down", time.monotonic()
        self._reload_nginx()

    def _mark_up(self, b: Backend, reload: bool = True):
        b.state = "up"
        b.workers = b.worker_pids()
        b.up_since = b.answered_at = time.monotonic()
        log.info("%s up on %s (pid %s)", b.name, b.address, b.pid)
        if reload:
            self._reload_nginx()

    def _reload_nginx(self):
        """Re-render with the current up/down list and reload (SIGHUP): open connections stay with
        the old workers; returns once new workers (the new list) have started."""
        self._write_nginx_conf()
        if not self.nginx.alive:
            return
        before = self.nginx.children()
        self.nginx.send(signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while not self.nginx.children() - before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # the old workers stop accepting once the master tells them to

    def _states(self) -> str:
        return ", ".join(f"{b.name} {b.state}" for b in self.backends)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _gunicorn_has(setting: str) -> bool:
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return False
    return any(s.name == setting for s in KNOWN_SETTINGS)


def _listen_address(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _self_signed_cert(folder: Path, hosts: list[str]):
    """webapp/tls.py's certificate, loaded on its own (importing the webapp package loads torch)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ser_webapp_tls", ROOT / "webapp" / "tls.py")
    tls = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tls)
    tls.self_signed_cert(folder, [h for h in hosts if h not in ("0.0.0.0", "::", "")])


def _redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait_for(check, timeout_s: float, service: Service):
    deadline = time.monotonic() + timeout_s
    while not check():
        if not service.alive:
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service.name} did not answer in {timeout_s} s:\n{service.tail()}")
        time.sleep(0.1)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Start Redis, nginx and K app processes on this machine")
    parser.add_argument("--apps", type=int, default=2, help="app processes (gunicorn, one worker each)")
    parser.add_argument("--port", type=int, default=8080, help="nginx's port (the URL to open)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="nginx's interface (0.0.0.0: all); Redis and the apps stay on loopback")
    parser.add_argument("--weights", help="weights folder or checkpoint (default: weights/)")
    parser.add_argument("--run-dir", help="config files, logs and pid files (default: a new temporary folder)")
    parser.add_argument("--https", action="store_true",
                        help="nginx serves TLS with a self-signed certificate made in the run directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s stack %(levelname)s %(message)s")

    stack = Stack(apps=args.apps, port=args.port, weights=args.weights, run_dir=args.run_dir, host=args.host,
                  https=args.https)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        print(f"Serving on {stack.url}/  (logs in {stack.run_dir}; Ctrl-C stops)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not leave servers behind
            signal.signal(sig, signal.SIG_IGN)
        log.info("stopping")
        stack.stop()


def _interrupt(signum, frame):
    """SIGTERM stops the stack the way Ctrl-C does."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
