"""TurEV-DB (Turkish): ``Angry/1157_kz_acik.ext``: ``<speaker>_<code>_<word>``.

Speakers: 1157, 1234, 1358, 1984, 6783, 7895 (four digits; gender not given). Words are
written without Turkish letters; one word carries a digit (``7895_hl_ogul1``, the word ogul).
The original downloads are ``Sound Source/<Emotion>/*.wav``, the same layout.

Labels: kz angry, sk (calm) -> neutral, mt happy, hl sad; letter case is ignored. The folder
(Angry, Calm, Happy, Sad) is optional; a file whose code disagrees with its folder is skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._common import FOLDER_DISAGREES, MALFORMED, UNKNOWN_EMOTION, Record, Skip, match, record

CORPUS = "turevdb"
LABELS = {"kz": "angry", "sk": "neutral", "mt": "happy", "hl": "sad"}
FOLDERS = {"angry": "angry", "calm": "neutral", "happy": "happy", "sad": "sad"}
SPEAKERS = ("1157", "1234", "1358", "1984", "6783", "7895")

_NAME = re.compile(r"(\d{4})_([a-z]{2})_([a-z]+)(\d*)", re.IGNORECASE)


def parse(path: Path) -> Record | Skip | None:
    path = Path(path)
    name = match(_NAME, path.stem)
    if name is None:
        return None
    speaker, code, word = name[0], name[1].lower(), name[2].lower()
    if code not in LABELS:
        return Skip(CORPUS, UNKNOWN_EMOTION)
    if speaker not in SPEAKERS:
        return Skip(CORPUS, MALFORMED)
    folder = FOLDERS.get(path.parent.name.lower())
    if folder is not None and folder != LABELS[code]:
        return Skip(CORPUS, FOLDER_DISAGREES)
    return record(path, CORPUS, speaker, None, LABELS[code], emotion=code, word=word)
