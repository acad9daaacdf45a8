"""The evaluation protocols' split rules (no training needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ser_model.corpora import Record
from ser_model.protocols import RAVDESS_FOLDS, pooled_metrics, validation_speakers


def test_ravdess_folds_cover_actors_1_to_20_once_with_both_genders_each():
    actors = [a for fold in RAVDESS_FOLDS for a in fold]
    assert sorted(actors) == list(range(1, 21))
    for fold in RAVDESS_FOLDS:  # odd actors are male, even female
        assert {a % 2 for a in fold} == {0, 1}


def test_validation_speakers_are_one_per_gender_from_the_training_side():
    recs = [Record(Path(f"{a}.wav"), "ravdess", f"ravdess-{a:02d}", "male" if a % 2 else "female", "sad")
            for a in range(5, 21)]
    held = validation_speakers(recs + [Record(Path("t.wav"), "tess", "tess-OAF", "female", "sad")])
    assert len(held) == 2 and held <= {r.speaker for r in recs}
    assert {int(s.split("-")[1]) % 2 for s in held} == {0, 1}


def test_pooled_metrics_recompute_from_the_summed_confusion():
    confusion = np.array([[3, 1], [0, 4]])
    m = pooled_metrics(confusion, ["a", "b"])
    assert m["n"] == 8 and m["confusion"] == confusion.tolist()
    assert abs(m["wa"] - 7 / 8) < 1e-9 and abs(m["ua"] - (3 / 4 + 1) / 2) < 1e-9


def test_merge_folds_averages_fold_files_and_keeps_their_commands(tmp_path):
    import json

    from ser_model.metrics import compute_metrics
    from ser_model.protocols import merge_folds

    folder = tmp_path / "folds" / "exp"
    folder.mkdir(parents=True)
    for k, (truth, pred) in enumerate([([0, 1, 1, 0], [0, 1, 1, 0]), ([0, 1, 1, 0], [0, 0, 0, 0])], start=1):
        fold = {"fold": k, "clean": compute_metrics(truth, pred, ["a", "b"]), "train_config": {"arch": "tdnn"},
                "command": f"python -m ser_model.protocols ravdess-cv --folds {k}"}
        (folder / f"fold{k}.json").write_text(json.dumps(fold))
    merged = merge_folds("exp", "", tmp_path)
    assert merged["clean"]["ua"]["values"] == [1.0, 0.5] and abs(merged["clean"]["ua"]["mean"] - 0.75) < 1e-9
    assert merged["command"].count("ravdess-cv") == 2 and merged["train_config"] == {"arch": "tdnn"}
    assert "degraded" not in merged
