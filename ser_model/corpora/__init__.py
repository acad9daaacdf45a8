"""Find the labelled clips of the emotion corpora under any folders, in their own layouts.

Each corpus has a reader module whose ``parse(path)`` returns a :class:`Record`, a
:class:`Skip` (its file, but unusable: an unmappable label or a malformed name) or None
(not its file). :func:`scan` walks folders and hands every audio file to the readers.
Labels are never guessed: what no reader can map is skipped and counted.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import ased, cremad, emodb, ravdess, savee, tess, turevdb
from ._common import AUDIO_EXTENSIONS, Record, Skip

__all__ = ["AUDIO_EXTENSIONS", "READERS", "Record", "ScanResult", "Skip", "parse", "scan"]

READERS = (ravdess, cremad, emodb, ased, savee, tess, turevdb)  # their names never overlap
UNRECOGNISED = "unrecognised file name"
_IGNORED_DIRS = {"__MACOSX"}  # resource forks of macOS zips: audio names, no audio


@dataclass
class ScanResult:
    """Records sorted by path, and skipped files counted by (corpus or "unknown", reason)."""

    records: list[Record] = field(default_factory=list)
    skipped: collections.Counter = field(default_factory=collections.Counter)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def by_corpus(self) -> dict[str, list[Record]]:
        """Records grouped by corpus name (keys sorted), each list still sorted by path."""
        groups = collections.defaultdict(list)
        for rec in self.records:
            groups[rec.corpus].append(rec)
        return dict(sorted(groups.items()))


def parse(path: str | Path) -> Record | Skip | None:
    """The first reader's answer for ``path`` that is not None, or None."""
    path = Path(path)
    for reader in READERS:
        result = reader.parse(path)
        if result is not None:
            return result
    return None


def scan(*roots: str | Path) -> ScanResult:
    """Parse every audio file under each root (a folder, or a single file).

    Files reached twice through overlapping roots count once. Hidden files and folders are
    left out, as are non-audio files; a ``VideoDemographics.csv`` under a root gives its
    CREMA-D records their gender. A speaker whose files disagree on gender gets the majority
    (None on a tie), and the overruled value is kept in ``extra["gender_in_name"]``.

    Raises
    ------
    FileNotFoundError
        When a root does not exist.
    """
    records, skipped, seen = [], collections.Counter(), set()
    for root in map(Path, roots):
        audio, demographics = _walk(root)
        genders = {}
        for csv_path in demographics:
            genders.update(cremad.read_demographics(csv_path))
        for path in audio:
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            result = parse(path)
            if result is None:
                skipped["unknown", UNRECOGNISED] += 1
            elif isinstance(result, Skip):
                skipped[result.corpus, result.reason] += 1
            else:
                if result.corpus == cremad.CORPUS and genders:
                    result = cremad.with_gender(result, genders)
                records.append(result)
    records = _settle_genders(records)
    records.sort(key=lambda rec: rec.path)
    return ScanResult(records, skipped)


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Audio files and CREMA-D demographics files under ``root``."""
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    if root.is_file():
        files = [root]
    else:
        files = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _IGNORED_DIRS)
            files.extend(Path(folder, n) for n in sorted(names) if not n.startswith("."))
    audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    demographics = [p for p in files if p.name.lower() == cremad.DEMOGRAPHICS_FILE.lower()]
    return audio, demographics


def _settle_genders(records: list[Record]) -> list[Record]:
    """Give each speaker the gender most of their files carry (None when tied)."""
    votes = collections.defaultdict(collections.Counter)
    for rec in records:
        if rec.gender is not None:
            votes[rec.speaker][rec.gender] += 1
    settled = {}
    for speaker, counts in votes.items():
        ranked = counts.most_common()
        tied = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
        settled[speaker] = None if tied else ranked[0][0]
    out = []
    for rec in records:
        gender = settled.get(rec.speaker)
        if rec.gender != gender:
            extra = dict(rec.extra)
            if rec.gender is not None:
                extra["gender_in_name"] = rec.gender
            rec = dataclasses.replace(rec, gender=gender, extra=extra)
        out.append(rec)
    return out
