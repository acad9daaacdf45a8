"""EMO-DB (Berlin): ``03a01Fa.ext``: speaker, text (a01-b10), emotion letter, version letter.

Speakers: 03, 10, 11, 12, 15 male; 08, 09, 13, 14, 16 female.

Labels (German initials): W angry, E disgust, A fearful, F happy, T sad, N neutral;
L (boredom) has no counterpart and is skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._common import MALFORMED, UNKNOWN_EMOTION, Record, Skip, match, record

CORPUS = "emodb"
GENDERS = {"03": "male", "10": "male", "11": "male", "12": "male", "15": "male",
           "08": "female", "09": "female", "13": "female", "14": "female", "16": "female"}
LABELS = {"W": "angry", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad",
          "N": "neutral"}
BOREDOM = "boredom has no counterpart"

_NAME = re.compile(r"(\d\d)([ab]\d\d)([a-z])([a-z])", re.IGNORECASE)


def parse(path: Path) -> Record | Skip | None:
    path = Path(path)
    name = match(_NAME, path.stem)
    if name is None:
        return None
    speaker, text, emotion, version = name[0], name[1].lower(), name[2].upper(), name[3].lower()
    if emotion == "L":
        return Skip(CORPUS, BOREDOM)
    if emotion not in LABELS:
        return Skip(CORPUS, UNKNOWN_EMOTION)
    if speaker not in GENDERS or not 1 <= int(text[1:]) <= 10:
        return Skip(CORPUS, MALFORMED)
    return record(path, CORPUS, speaker, GENDERS[speaker], LABELS[emotion], emotion=emotion,
                  text=text, version=version)
