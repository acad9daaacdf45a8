"""Extension instances, bound to an app in ``create_app`` (no app at import time)."""
from flask_socketio import SocketIO

socketio = SocketIO()
