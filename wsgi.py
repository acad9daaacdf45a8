"""WSGI entry point for production:
``gunicorn --worker-class gthread -w 1 --threads 100 -b 0.0.0.0:8000 wsgi:app``
(one worker: Socket.IO sessions and the inference worker live in that process)."""
from webapp import create_app

app = create_app()
