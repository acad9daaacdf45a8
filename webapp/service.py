"""A background service thread: one daemon thread, started again if anything killed it."""
from __future__ import annotations

import threading
from typing import Callable


class ServiceThread:
    """Runs ``target`` in one daemon thread; ``target`` loops until ``stopping`` is set.

    ``start`` is safe to call from any thread, any number of times: it starts the thread once, or
    again if it died (the inference lanes and the VAD batcher are revived by every caller and by the
    reaper, so a bug that ends one does not end the service).
    """

    def __init__(self, target: Callable[[], None], name: str):
        self.target, self.name = target, name
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self):
        with self._lock:
            if not self.alive:
                self.stopping.clear()
                self._thread = threading.Thread(target=self.target, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 2.0):
        """Ask the thread to end and wait up to ``timeout`` for it (not when called from it)."""
        self.stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
