"""WSGI entry point for production: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``
(one worker: Socket.IO sessions and the inference worker live in that process)."""
from webapp import create_app, logs

logs.configure()
app = create_app()
