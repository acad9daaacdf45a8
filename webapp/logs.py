"""Structured logs: one JSON object per line, for requests and streams; never audio, never addresses."""
from __future__ import annotations

import json
import logging
import time

from flask import g, request

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
access = logging.getLogger("ser.access")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO"):
    """JSON lines on stderr for the app's loggers (Werkzeug's own request lines are not used)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def init_app(app):
    """One ``ser.access`` line per HTTP request: method, route, status, size, duration."""

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        if request.path.startswith(("/socket.io", "/static/", "/vendor/")):
            return response
        ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        access.info("request", extra={"event": "http", "method": request.method,
                                      "route": request.url_rule.rule if request.url_rule else None,
                                      "status": response.status_code, "bytes_in": request.content_length or 0,
                                      "ms": round(ms, 1)})
        return response
