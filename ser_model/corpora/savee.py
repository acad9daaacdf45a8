"""SAVEE: ``DC/a01.ext`` (speaker folders, possibly under ``AudioData/``) or flat ``DC_a01.ext``.

Speakers: DC, JE, JK, KL, all male. The name is an emotion code then a two-digit sentence.

Labels: a angry, d disgust, f fearful, h happy, n neutral, sa sad, su surprised. The code is
all letters before the digits, so ``s01`` is an unknown code (skipped), never sad or surprised.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._common import UNKNOWN_EMOTION, Record, Skip, match, record

CORPUS = "savee"
SPEAKERS = ("DC", "JE", "JK", "KL")
LABELS = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral",
          "sa": "sad", "su": "surprised"}

_CODE = r"([a-z]+)(\d\d)"
_NESTED = re.compile(_CODE, re.IGNORECASE)
_FLAT = re.compile(rf"({'|'.join(SPEAKERS)})_{_CODE}", re.IGNORECASE)


def parse(path: Path) -> Record | Skip | None:
    path = Path(path)
    name = match(_FLAT, path.stem)
    if name is None and path.parent.name.upper() in SPEAKERS:
        code = match(_NESTED, path.stem)
        if code is not None:
            name = (path.parent.name, *code)
    if name is None:
        return None
    speaker, code, sentence = name[0].upper(), name[1].lower(), name[2]
    if code not in LABELS:
        return Skip(CORPUS, UNKNOWN_EMOTION)
    return record(path, CORPUS, speaker, "male", LABELS[code], emotion=code, sentence=sentence)
