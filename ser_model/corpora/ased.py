"""ASED (Amharic): ``01Neutral/n1-01-01-01-01.ext``: ``<e><N>-<sentence>-<rep>-<gender>-<speaker>``.

Gender: 01 female, 02 male. Speakers 01-65. Codes are checked on the real data: every file
in ``01Neutral`` starts ``n1``, ``02Fearful`` ``f2``, ``03Happy`` ``h3``, ``04Sad`` ``s4`` (one
``S4``), ``05Angry`` ``a5``; letter case is ignored.

Labels: n1 neutral, f2 fearful, h3 happy, s4 sad, a5 angry. The folder is optional; a file
whose code disagrees with its folder is skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._common import FOLDER_DISAGREES, MALFORMED, UNKNOWN_EMOTION, Record, Skip, match, record

CORPUS = "ased"
LABELS = {"n1": "neutral", "f2": "fearful", "h3": "happy", "s4": "sad", "a5": "angry"}
FOLDERS = {"01neutral": "neutral", "02fearful": "fearful", "03happy": "happy",
           "04sad": "sad", "05angry": "angry"}
GENDERS = {"01": "female", "02": "male"}

_NAME = re.compile(r"([a-z]\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)", re.IGNORECASE)


def parse(path: Path) -> Record | Skip | None:
    path = Path(path)
    name = match(_NAME, path.stem)
    if name is None:
        return None
    code, sentence, repetition, gender, speaker = name[0].lower(), *name[1:]
    if code not in LABELS:
        return Skip(CORPUS, UNKNOWN_EMOTION)
    if gender not in GENDERS or speaker == "00":
        return Skip(CORPUS, MALFORMED)
    folder = FOLDERS.get(path.parent.name.lower())
    if folder is not None and folder != LABELS[code]:
        return Skip(CORPUS, FOLDER_DISAGREES)
    return record(path, CORPUS, speaker, GENDERS[gender], LABELS[code], emotion=code,
                  sentence=sentence, repetition=repetition)
