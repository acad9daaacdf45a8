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


def _one_hot(c, p=0.6):
    return [p if i == c else (1 - p) / 6 for i in range(7)]


def _write_run(reports: Path, name: str, probs: list, truth=(0, 1)) -> dict:
    """A one-fold CV run whose held-out files x.wav, y.wav (true classes ``truth``) got ``probs``."""
    import json

    from ser_model.labels import EMOTIONS
    from ser_model.metrics import compute_metrics

    folder = reports / "folds" / name
    folder.mkdir(parents=True)
    clean = {**compute_metrics(list(truth), [int(np.argmax(p)) for p in probs], EMOTIONS),
             "files": [["x.wav", truth[0], probs[0]], ["y.wav", truth[1], probs[1]]]}
    fold = {"fold": 1, "train_speakers": ["s1"], "test_speakers": ["s2"], "n_train": 10, "clean": clean,
            "train_config": {"arch": "attn_cnn", "seed": 0}}
    (folder / "fold1.json").write_text(json.dumps(fold))
    return clean


def test_ensemble_folds_average_each_files_probabilities(tmp_path):
    """Two runs that each get one file wrong, confidently on different files: their average gets
    both right; files and folds must match between members."""
    import json

    import pytest

    from ser_model.protocols import ensemble_folds

    for name, probs in {"a": [_one_hot(0), _one_hot(2, 0.4)], "b": [_one_hot(1, 0.4), _one_hot(1)]}.items():
        assert _write_run(tmp_path, name, probs)["wa"] == 0.5  # each member alone gets one file of two wrong
    result = ensemble_folds(["a", "b"], reports=tmp_path)
    assert result["clean"]["ua"]["values"] == [1.0] and result["train_config"]["members"] == 2
    assert "ensemble --of a b" in result["command"] and "degraded" not in result
    fold_b = json.loads((tmp_path / "folds" / "b" / "fold1.json").read_text())
    fold_b["clean"]["files"] = fold_b["clean"]["files"][:1]
    (tmp_path / "folds" / "b" / "fold1.json").write_text(json.dumps(fold_b))
    with pytest.raises(ValueError, match="different files"):
        ensemble_folds(["a", "b"], reports=tmp_path)


def test_ensemble_sizes_score_every_subset_of_each_size(tmp_path):
    """Runs a and b each get one file wrong, c gets both wrong: singles score 0.5, 0.5, 0 (mean 1/3);
    pairs a+b 1.0, a+c and b+c 0.5 (mean 2/3); all three 1.0; and the plot is written."""
    from ser_model.metrics import plot_ensemble_sizes
    from ser_model.protocols import ensemble_sizes

    _write_run(tmp_path, "a", [_one_hot(0), _one_hot(2, 0.4)])
    _write_run(tmp_path, "b", [_one_hot(1, 0.4), _one_hot(1)])
    _write_run(tmp_path, "c", [_one_hot(3, 0.3), _one_hot(3, 0.3)])
    sizes = ensemble_sizes(["a", "b", "c"], tmp_path)["sizes"]
    assert [s["k"] for s in sizes] == [1, 2, 3] and [s["subsets"] for s in sizes] == [3, 3, 1]
    assert np.allclose([s["clean_ua"]["mean"] for s in sizes], [1 / 3, 2 / 3, 1.0])
    assert (sizes[0]["clean_ua"]["min"], sizes[0]["clean_ua"]["max"]) == (0.0, 0.5)
    assert (sizes[1]["clean_ua"]["min"], sizes[1]["clean_ua"]["max"]) == (0.5, 1.0)
    assert "degraded_ua" not in sizes[0]
    assert plot_ensemble_sizes(sizes, tmp_path / "sizes.png").stat().st_size > 1000


def test_cross_corpus_scores_a_given_checkpoint_only_if_it_was_trained_on_exactly_the_source(tmp_path):
    import pytest
    import soundfile as sf

    from ser_model.checkpoint import save_checkpoint
    from ser_model.model import ModelConfig, build_model
    from ser_model.protocols import cross_corpus
    from ser_model.train import TrainConfig

    rng = np.random.default_rng(0)
    for path in ("RAVDESS/Actor_01/03-01-05-01-01-01-01.wav", "RAVDESS/Actor_02/03-01-04-01-01-01-02.wav",
                 "TESS/OAF_angry/OAF_back_angry.wav", "TESS/OAF_Sad/OAF_back_sad.wav"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / path, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    cfg = ModelConfig(channels=(8, 16, 32, 64))
    right = save_checkpoint(tmp_path / "right", build_model(cfg), cfg,
                            {"data": {"ravdess": {"files": 2, "speakers": 2}}, "train_config": {"seed": 7}})
    result = cross_corpus([tmp_path], TrainConfig(), "ravdess", "tess", weights=right)
    assert result["clean"]["n"] == 2 and len(result["clean"]["files"]) == 2
    assert result["train_speakers"] == ["ravdess-01", "ravdess-02"] and result["train_config"] == {"seed": 7}
    for data in ({"ravdess": {"files": 2, "speakers": 2}, "tess": {"files": 2, "speakers": 1}},
                 {"ravdess": {"files": 1200, "speakers": 20}}):
        wrong = save_checkpoint(tmp_path / "wrong", build_model(cfg), cfg, {"data": data})
        with pytest.raises(ValueError, match="was trained on"):
            cross_corpus([tmp_path], TrainConfig(), "ravdess", "tess", weights=wrong)


def test_results_table_names_each_recipe_apart(tmp_path):
    """Rows of different recipes must not share a label: widths, ensemble size and a non-default
    number of augmented copies all show."""
    import json

    from ser_model.modelcard import results_table

    for name, cfg in {"a": {"arch": "attn_cnn", "channels": [32, 64], "members": 2, "variants": 2},
                      "b": {"arch": "attn_cnn", "channels": [32, 64], "members": 2, "variants": 8},
                      "c": {"arch": "cnn1d"}}.items():
        clean = {"ua": {"mean": 0.5, "std": 0.1}, "wa": {"mean": 0.5, "std": 0.1}}
        (tmp_path / f"ravdess-cv_{name}.json").write_text(json.dumps(
            {"folds": [{"train_speakers": ["ravdess-01"]}], "clean": clean, "train_config": cfg, "command": name}))
    labels = [row.split(" | ")[1] for row in results_table(tmp_path).splitlines()[2:5]]
    assert labels == ["`attn_cnn 32-64 x2`", "`attn_cnn 32-64 x2, 8 aug. copies`", "`cnn1d`"]
