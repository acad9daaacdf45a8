"""Speech emotion recognition: decode audio, predict one of seven emotions over time."""
from .audio import SAMPLE_RATE, AudioError, load_audio
from .inference import HOP_S, WINDOW_S, Prediction, Recognizer, Segment
from .labels import EMOTIONS

__all__ = ["EMOTIONS", "SAMPLE_RATE", "WINDOW_S", "HOP_S", "AudioError", "load_audio",
           "Prediction", "Recognizer", "Segment"]
