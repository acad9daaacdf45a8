"""Leave-one-corpus-out and the level conditions: splits, scoring, merging, the table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_model import protocols
from ser_model.corpora import Record
from ser_model.evaluate import GAIN_RANGE_DB, condition_audio, score_at_gains
from ser_model.labels import EMOTIONS
from ser_model.metrics import compute_metrics
from ser_model.train import TrainConfig

SR = 16000
# A tiny tree of every LOCO corpus in its own layout (RAVDESS actor 21 is not part of the protocol).
TREE = {
    "RAVDESS/Actor_01/03-01-05-01-01-01-01.wav": "angry",
    "RAVDESS/Actor_02/03-01-04-01-01-01-02.wav": "sad",
    "RAVDESS/Actor_21/03-01-04-01-01-01-21.wav": "sad",
    "TESS/OAF_angry/OAF_back_angry.wav": "angry",
    "TESS/YAF_happy/YAF_back_happy.wav": "happy",
    "TESS/OAF_disgust/OAF_back_disgust.wav": "disgust",
    "ASED/05Angry/a5-01-01-01-01.wav": "angry",
    "ASED/04Sad/s4-01-01-02-02.wav": "sad",
    "TurEV-DB/Calm/1234_sk_acik.wav": "neutral",
    "TurEV-DB/Sad/1234_hl_acik.wav": "sad",
    "TurEV-DB/Happy/1358_mt_cay.wav": "happy",
}


def make_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for k, rel in enumerate(TREE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(SR) / SR
        wave = 0.05 * (k + 1) / len(TREE) * np.sin(2 * np.pi * (120 + 20 * k) * t) + 0.01 * rng.standard_normal(SR)
        sf.write(root / rel, wave.astype(np.float32), SR)
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "data")


def fake_split(calls: list):
    """A run_split that records what it was given and 'predicts' every file as fearful."""
    def run_split(bank, train_recs, test_recs, cfg, robust=True, gain=True, fixed_gains=(), precision="auto"):
        calls.append((train_recs, test_recs, precision))
        metrics = compute_metrics([EMOTIONS.index(r.label) for r in test_recs], [4] * len(test_recs), EMOTIONS)
        out = {"train_speakers": sorted({r.speaker for r in train_recs}),
               "test_speakers": sorted({r.speaker for r in test_recs}), "clean": metrics}
        return {**out, "gain": metrics} if gain else out
    return run_split


class FakeBank:
    def __init__(self, records, **kw):
        self.records = records


def test_loco_trains_on_every_other_corpus_and_tests_on_all_of_one(tree, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(protocols, "run_split", fake_split(calls))
    monkeypatch.setattr(protocols, "FeatureBank", FakeBank)
    result = protocols.loco([tree], TrainConfig(), name="run", reports=tmp_path / "reports")
    assert result["holdouts"] == ["ravdess", "tess", "ased", "turevdb"]
    for (train_recs, test_recs, _), held in zip(calls, result["holdouts"]):
        assert {r.corpus for r in test_recs} == {held}
        assert {r.corpus for r in train_recs} == set(protocols.LOCO_CORPORA) - {held}
        assert all(protocols.actor(r) <= 20 for r in train_recs + test_recs if r.corpus == "ravdess")
    tess = result["folds"][1]
    assert tess["train_corpora"] == ["ravdess", "ased", "turevdb"] and tess["clean"]["n"] == 3
    # everything called fearful: UA 0 over the corpus's own classes, collapse 1 / (largest true share)
    assert result["clean"]["ua"]["values"] == [0.0] * 4
    assert result["clean"]["collapse"]["values"] == pytest.approx([1 / 0.5, 1 / (1 / 3), 1 / 0.5, 1 / (1 / 3)])
    files = sorted(p.name for p in (tmp_path / "reports" / "folds" / "run").iterdir())
    assert files == ["holdout-ased.json", "holdout-ravdess.json", "holdout-tess.json", "holdout-turevdb.json"]


def test_loco_of_some_corpora_merges_into_the_whole(tree, tmp_path, monkeypatch):
    """Two processes holding out two corpora each, merged, give the one-process result."""
    monkeypatch.setattr(protocols, "run_split", fake_split([]))
    monkeypatch.setattr(protocols, "FeatureBank", FakeBank)
    reports = tmp_path / "reports"
    whole = protocols.loco([tree], TrainConfig(), name="whole", reports=reports, command="c")
    for part in (["tess", "turevdb"], ["ravdess", "ased"]):
        protocols.loco([tree], TrainConfig(), holdouts=part, name="parts", reports=reports, command=f"c {part[0]}")
    merged = protocols.merge_folds("parts", "", reports)
    assert merged["holdouts"] == whole["holdouts"] and merged["clean"] == whole["clean"]
    assert merged["gain"] == whole["gain"] and merged["command"] == "c ravdess && c tess"
    protocols.save_report("parts", merged, reports)
    assert {p.name for p in reports.glob("parts_*.png")} == {
        "parts_shares.png", *(f"parts_confusion_{c}.png" for c in protocols.LOCO_CORPORA)}
    with pytest.raises(ValueError, match="no fold"):
        protocols.merge_folds("absent", "", reports)


def test_loco_refuses_a_corpus_that_is_not_there(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(protocols, "FeatureBank", FakeBank)
    with pytest.raises(ValueError, match="no turevdb files"):
        protocols.loco([tree / "TESS", tree / "ASED"], TrainConfig(), holdouts=["turevdb"], reports=tmp_path)


def test_validation_speakers_come_from_the_training_side_without_ravdess():
    """cnn1d's early-stopping speakers: RAVDESS actors when RAVDESS trains, else the training
    corpus with the most speakers (never the held-out one, which is not in the records)."""
    recs = [Record(Path(f"{s}.wav"), "ased", f"ased-{s:02d}", "male" if s % 2 else "female", "sad")
            for s in range(1, 7)]
    recs += [Record(Path(f"t{s}.wav"), "tess", f"tess-{s}", "female", "sad") for s in ("OAF", "YAF")]
    held = protocols.validation_speakers(recs)
    assert len(held) == 2 and {s.split("-")[0] for s in held} == {"ased"}
    assert {int(s.split("-")[1]) % 2 for s in held} == {0, 1}


@pytest.fixture
def checkpoint(tmp_path):
    """A random small model that says it was trained on the tree's two RAVDESS actors 1-20."""
    from ser_model.checkpoint import save_checkpoint
    from ser_model.model import ModelConfig, build_model

    cfg = ModelConfig(channels=(8, 16, 32, 64))
    return save_checkpoint(tmp_path / "m", build_model(cfg), cfg,
                           {"data": {"ravdess": {"files": 2, "speakers": 2}}, "train_config": {"arch": "attn_cnn"}})


def test_loco_of_a_checkpoint_scores_every_corpus_it_was_not_trained_on(tree, tmp_path, checkpoint):
    reports = tmp_path / "reports"
    result = protocols.loco_weights([tree], checkpoint, name="w", reports=reports, fixed_gains=(-15, 0, 15))
    assert result["holdouts"] == ["tess", "ased", "turevdb"] and result["weights"] == str(checkpoint)
    tess = result["folds"][0]
    assert tess["train_corpora"] == ["ravdess"] and tess["n_train"] == 2
    assert tess["clean"]["n"] == 3 and len(tess["clean"]["files"]) == 3
    assert set(tess) >= {"clean", "degraded", "gain", "fixed_gains"}
    assert tess["fixed_gains"]["metrics"]["+0"]["ua"] == tess["clean"]["ua"]  # 0 dB is the clean file
    assert set(result["fixed_gains"]["ua"]) == {"-15", "+0", "+15"}
    shares = tess["clean"]["shares"]
    assert sum(shares["predicted"].values()) == pytest.approx(1.0)
    assert shares["true"]["disgust"] == pytest.approx(1 / 3) and shares["true"]["sad"] == 0
    with pytest.raises(ValueError, match="cannot hold them out"):
        protocols.loco_weights([tree], checkpoint, holdouts=["ravdess"], reports=reports)
    with pytest.raises(ValueError, match="was trained on"):  # the checkpoint's corpus is not here file for file
        protocols.loco_weights([tree / "TESS", tree / "ASED"], checkpoint, reports=reports)

    result.update(command="python -m ser_model.protocols loco --weights m.pt", train_config={"arch": "attn_cnn"})
    protocols.save_report("loco_w", result, reports)
    table = protocols.loco_table(reports).splitlines()
    assert len(table) == 2 + 1 + 2  # header, rule, one run, blank, note
    row = table[2].split(" | ")
    assert row[0] == "| loco_w" and "checkpoint" in row[1] and row[2] == "RAVDESS 1-20"
    assert row[5] == "-"  # RAVDESS was not held out
    assert float(row[3]) == pytest.approx(100 * result["clean"]["ua"]["mean"], abs=0.05)
    details = protocols.loco_details(reports).splitlines()
    assert len(details) == 2 + 3 and "TurEV-DB" in details[-1]


def test_loco_command_line_writes_the_report_and_plots(tree, tmp_path, checkpoint):
    reports = tmp_path / "reports"
    protocols.main(["loco", "--data", str(tree), "--weights", str(checkpoint), "--holdout", "turevdb",
                    "--no-gain", "--reports", str(reports), "--name", "loco_cli"])
    report = json.loads((reports / "loco_cli.json").read_text())
    assert report["holdouts"] == ["turevdb"] and "gain" not in report and "degraded" in report
    assert report["command"].startswith("python -m ser_model.protocols loco --data")
    assert (reports / "loco_cli_shares.png").stat().st_size > 1000
    assert (reports / "folds" / "loco_cli" / "holdout-turevdb.json").exists()


# --------------------------------------------------------------------------- level conditions
def test_random_gain_is_seeded_per_file_within_range_and_clips(tmp_path):
    wave = (0.5 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    paths = [tmp_path / f"clip{k}.wav" for k in range(8)]
    for p in paths:
        sf.write(p, wave, SR, subtype="FLOAT")
    gains = []
    for p in paths:
        out = condition_audio(p, random_gain=True)
        assert np.array_equal(out, condition_audio(p, random_gain=True))  # the same file, the same level
        assert np.abs(out).max() <= 1.0
        gains.append(20 * np.log10(np.abs(out).max() / 0.5))
    assert len({round(g, 3) for g in gains}) == len(paths)  # each file its own level
    assert all(GAIN_RANGE_DB[0] - 0.01 <= g <= 6.03 for g in gains)  # peaks clip at full scale: at most +6 dB
    assert np.allclose(condition_audio(paths[0], gain_db=-15), wave * 10 ** (-15 / 20), atol=1e-6)
    loud = condition_audio(paths[0], gain_db=15)
    assert np.abs(loud).max() == 1.0 and np.mean(np.abs(loud) == 1.0) > 0.3  # clipped where it clips


class LevelRecognizer:
    """Calls a clip angry when it is loud and neutral when not: a model that learnt the level."""

    def __init__(self, threshold_rms: float):
        self.threshold = threshold_rms

    def predict(self, wave, sample_rate):
        from types import SimpleNamespace

        label = "angry" if np.sqrt(np.mean(wave ** 2)) > self.threshold else "neutral"
        return SimpleNamespace(label=label, probabilities={e: float(e == label) for e in EMOTIONS})

    def predict_file(self, path):
        return self.predict(sf.read(path, dtype="float32")[0], SR)


def test_score_at_gains_exposes_a_level_dependent_model(tmp_path):
    """Half the clips are angry and loud, half neutral and quiet: at 0 dB the level model is right
    on all; 15 dB louder it calls everything angry, 15 dB quieter everything neutral."""
    recs = []
    for k, (label, amp) in enumerate([("angry", 0.3)] * 3 + [("neutral", 0.03)] * 3):
        path = tmp_path / f"c{k}.wav"
        sf.write(path, (amp * np.sin(2 * np.pi * 150 * np.arange(SR) / SR)).astype(np.float32), SR)
        recs.append(Record(path, "x", f"x-{k}", None, label))
    level = score_at_gains(LevelRecognizer(0.06), recs, progress=False)
    assert level["ua"] == {"-15": 0.5, "+0": 1.0, "+15": 0.5} and level["ua_spread"] == 0.5
    deaf = score_at_gains(LevelRecognizer(10.0), recs, progress=False)  # never angry: level cannot move it
    assert deaf["ua_spread"] == 0.0 and set(deaf["metrics"]) == {"-15", "+0", "+15"}


def test_loco_trains_and_scores_in_the_precision_asked(tree, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(protocols, "run_split", fake_split(calls))
    monkeypatch.setattr(protocols, "FeatureBank", FakeBank)
    protocols.run("loco", [tree], TrainConfig(), holdouts=["tess", "ased"], reports=tmp_path, precision="float32")
    assert [precision for _, _, precision in calls] == ["float32", "float32"]
