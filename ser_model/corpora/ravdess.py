"""RAVDESS: ``Actor_NN/MM-VC-EE-II-SS-RR-AA.ext`` (the Actor folder is optional).

Fields: modality (01 audio-video, 02 video, 03 audio), vocal channel (01 speech, 02 song),
emotion, intensity (01 normal, 02 strong; neutral has no strong), statement (01, 02),
repetition (01, 02), actor (01-24; odd male, even female).

Labels: 01 neutral, 02 calm -> neutral, 03 happy, 04 sad, 05 angry, 06 fearful,
07 disgust, 08 surprised.

Every name of five or more dashed two-digit fields is claimed; one that is not seven valid
fields, or whose actor differs from its ``Actor_NN`` folder, is skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._common import FOLDER_DISAGREES, MALFORMED, UNKNOWN_EMOTION, Record, Skip, match, record

CORPUS = "ravdess"
NAMES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
            "06": "fearful", "07": "disgust", "08": "surprised"}
LABELS = {**NAMES, "02": "neutral"}  # calm -> neutral
MODALITIES = {"01": "audio-video", "02": "video", "03": "audio"}
CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
ACTORS = range(1, 25)

_CLAIM = re.compile(r"\d\d(?:-\d\d){4,}")
_FIELDS = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(0[12])-(0[12])-(\d\d)")
_FOLDER = re.compile(r"Actor_(\d\d)", re.IGNORECASE)


def parse(path: Path) -> Record | Skip | None:
    path = Path(path)
    if not _CLAIM.fullmatch(path.stem):
        return None
    fields = match(_FIELDS, path.stem)
    if fields is None:
        return Skip(CORPUS, MALFORMED)
    modality, channel, emotion, intensity, statement, repetition, actor = fields
    if emotion not in NAMES:
        return Skip(CORPUS, UNKNOWN_EMOTION)
    if (modality not in MODALITIES or channel not in CHANNELS or intensity not in INTENSITIES
            or int(actor) not in ACTORS or (emotion == "01" and intensity == "02")):
        return Skip(CORPUS, MALFORMED)
    folder = match(_FOLDER, path.parent.name)
    if folder and folder[0] != actor:
        return Skip(CORPUS, FOLDER_DISAGREES)
    gender = "male" if int(actor) % 2 else "female"
    return record(path, CORPUS, actor, gender, LABELS[emotion], emotion=NAMES[emotion],
                  modality=MODALITIES[modality], channel=CHANNELS[channel],
                  intensity=INTENSITIES[intensity], statement=statement, repetition=repetition)
