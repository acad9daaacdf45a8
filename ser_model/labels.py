"""The seven emotions of the public contract, in their fixed order."""

EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
NUM_CLASSES = len(EMOTIONS)  # 7
LABEL_TO_INDEX = {label: i for i, label in enumerate(EMOTIONS)}
