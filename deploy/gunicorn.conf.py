"""gunicorn settings for production: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

One worker process holds every Socket.IO session and the model; gunicorn's master restarts it
within seconds if it dies (crash, OOM kill, a hung worker missing ``timeout``), and the systemd
unit beside this file restarts the master. Put nginx in front (see deploy/nginx): it buffers
slow clients, which gthread workers cannot time out on their own.
"""
import os

bind = os.environ.get("SER_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = 1  # Socket.IO sessions and the inference worker live in this one process
threads = int(os.environ.get("SER_THREADS", "128"))  # one per open WebSocket, plus page and upload requests
timeout = 30  # a worker that stops answering its master for this long is killed and replaced
graceful_timeout = 10
keepalive = 5
limit_request_line = 4096
limit_request_fields = 64
limit_request_field_size = 8190
accesslog = None  # the app logs each request as JSON, without addresses
errorlog = "-"
