"""TESS: ``OAF_fear/OAF_back_fear.ext``: speaker, spoken word, emotion (any letter case).

Speakers: OAF (aged 64) and YAF (aged 26), both female; ``OA_`` (one file, ``OA_bite_neutral``)
is OAF. Folders are ``<speaker>_<emotion>`` (``OAF_fear``, ``OAF_Fear``, ``YAF_pleasant_surprise``,
``YAF_pleasant_surprised``); the folder is optional, but must agree with the file name.

Labels: angry, disgust, fear -> fearful, happy, neutral, ps / pleasant_surprise(d) -> surprised,
sad. Names of the TESS shape with another emotion are skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._common import FOLDER_DISAGREES, UNKNOWN_EMOTION, Record, Skip, match, record

CORPUS = "tess"
LABELS = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
          "neutral": "neutral", "ps": "surprised", "pleasant_surprise": "surprised",
          "pleasant_surprised": "surprised", "sad": "sad"}
SPEAKERS = {"OAF": "OAF", "OA": "OAF", "YAF": "YAF"}
AGES = {"OAF": 64, "YAF": 26}

_EMOTION = r"([a-z]+(?:_[a-z]+)?)"
_NAME = re.compile(r"(OAF|YAF|OA)_([a-z]+)_" + _EMOTION, re.IGNORECASE)
_FOLDER = re.compile(r"(OAF|YAF)_" + _EMOTION, re.IGNORECASE)


def parse(path: Path) -> Record | Skip | None:
    path = Path(path)
    name = match(_NAME, path.stem)
    if name is None:
        return None
    speaker, word, emotion = SPEAKERS[name[0].upper()], name[1].lower(), name[2].lower()
    if emotion not in LABELS:
        return Skip(CORPUS, UNKNOWN_EMOTION)
    label = LABELS[emotion]
    folder = match(_FOLDER, path.parent.name)
    if folder and folder[1].lower() in LABELS:
        if folder[0].upper() != speaker or LABELS[folder[1].lower()] != label:
            return Skip(CORPUS, FOLDER_DISAGREES)
    return record(path, CORPUS, speaker, "female", label, emotion=emotion, word=word,
                  age=AGES[speaker])
