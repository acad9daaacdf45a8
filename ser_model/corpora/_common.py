"""What every corpus reader shares: the record types, skip reasons and one constructor."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..labels import EMOTIONS

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".webm", ".aiff", ".aif")
GENDERS = ("male", "female")

# Skip reasons used by several readers, so their counts line up across corpora.
MALFORMED = "malformed name"
UNKNOWN_EMOTION = "unknown emotion code"
FOLDER_DISAGREES = "file name and folder disagree"


@dataclass(frozen=True)
class Record:
    """One usable clip: where it is, who speaks, and its contract label."""

    path: Path
    corpus: str
    speaker: str  # "<corpus>-<id>", unique across corpora
    gender: str | None  # "male", "female" or None when unknown
    label: str  # one of EMOTIONS
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.label not in EMOTIONS:
            raise ValueError(f"label {self.label!r} is not one of {EMOTIONS}")
        if self.gender is not None and self.gender not in GENDERS:
            raise ValueError(f"gender {self.gender!r} is not one of {GENDERS} or None")


@dataclass(frozen=True)
class Skip:
    """A file a reader recognises as its own but cannot use; ``reason`` is counted."""

    corpus: str
    reason: str


def record(path: Path, corpus: str, speaker_id: str, gender: str | None, label: str,
           **extra) -> Record:
    """Build a :class:`Record` whose speaker is ``"<corpus>-<speaker_id>"``."""
    return Record(Path(path), corpus, f"{corpus}-{speaker_id}", gender, label, extra)


def match(pattern: re.Pattern, name: str) -> tuple[str, ...] | None:
    """The groups of ``pattern`` matching the whole of ``name``, or None."""
    m = pattern.fullmatch(name)
    return m.groups() if m else None
