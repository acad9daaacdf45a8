"""Extension instances, bound to an app in ``create_app`` (no app at import time)."""
from engineio.payload import Payload
from flask_socketio import SocketIO

# A long-polling client may carry a second of 250 ms audio frames in one request, and each binary
# frame counts as two packets: the default of 16 would refuse the request and lose the audio.
Payload.max_decode_packets = 64

socketio = SocketIO()
