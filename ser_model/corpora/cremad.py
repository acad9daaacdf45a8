"""CREMA-D: ``1001_DFA_ANG_XX.ext``: actor (1001-1091), sentence (3 letters), emotion, level.

Levels: LO low, MD medium, HI high, XX / X unspecified.

Labels: ANG angry, DIS disgust, FEA fearful, HAP happy, NEU neutral, SAD sad.

The file name carries no gender: :func:`parse` leaves it None, and :func:`scan` fills it from
a ``VideoDemographics.csv`` (columns ``ActorID``, ..., ``Sex``) found under the scanned root,
through :func:`read_demographics` and :func:`with_gender`.
"""
from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

from ._common import MALFORMED, UNKNOWN_EMOTION, Record, Skip, match, record

CORPUS = "cremad"
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
LABELS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
          "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified", "X": "unspecified"}
ACTORS = range(1001, 1092)

_NAME = re.compile(r"(\d{4})_([a-z]{3})_([a-z]{3})_([a-z]{1,2})", re.IGNORECASE)


def parse(path: Path) -> Record | Skip | None:
    path = Path(path)
    name = match(_NAME, path.stem)
    if name is None:
        return None
    actor, sentence, emotion, level = name[0], name[1].upper(), name[2].upper(), name[3].upper()
    if emotion not in LABELS:
        return Skip(CORPUS, UNKNOWN_EMOTION)
    if int(actor) not in ACTORS or level not in LEVELS:
        return Skip(CORPUS, MALFORMED)
    return record(path, CORPUS, actor, None, LABELS[emotion], emotion=emotion,
                  sentence=sentence, level=LEVELS[level])


def read_demographics(path: Path) -> dict[str, str]:
    """Actor id -> "male" / "female" from a CREMA-D ``VideoDemographics.csv``."""
    genders = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            actor = (row.get("ActorID") or "").strip()
            sex = (row.get("Sex") or "").strip().lower()
            if actor and sex in ("male", "female"):
                genders[actor] = sex
    return genders


def with_gender(rec: Record, genders: dict[str, str]) -> Record:
    """``rec`` with its gender looked up in :func:`read_demographics` output, when listed."""
    gender = genders.get(rec.speaker.removeprefix(f"{CORPUS}-"))
    return dataclasses.replace(rec, gender=gender) if gender else rec
