"""Tests for ser_model.metrics against small cases worked out by hand."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from ser_model.metrics import (
    compute_metrics,
    format_report,
    plot_confusion,
    plot_curves,
    plot_shares,
    prediction_shares,
    split_curves,
    summarize_corpora,
    summarize_folds,
)

EMOTIONS = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
CONTRACT_KEYS = {"ua", "wa", "macro_f1", "n", "skipped", "labels", "per_class", "confusion"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Three classes, support 6/2/2; everything wrong is predicted as class "a".
#   confusion  a  b  c        recall     precision   f1
#        a     6  0  0        6/6 = 1    6/8 = 3/4    6/7
#        b     1  1  0        1/2        1/1          2/3
#        c     1  0  1        1/2        1/1          2/3
#   WA = 8/10, UA = (1 + 1/2 + 1/2)/3 = 2/3, macro-F1 = (6/7 + 2/3 + 2/3)/3 = 46/63
Y_TRUE = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 0, 0, 0, 0, 1, 0, 2]
ABC = ["a", "b", "c"]


def assert_plain_json(value, where="metrics"):
    """Only built-in types (bool excluded from numbers) all the way down; no NaN/inf."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str, f"{where}: key {k!r}"
            assert_plain_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain_json(v, f"{where}[{i}]")
    else:
        assert type(value) in (int, float, str), f"{where} is {type(value).__name__}"
        if type(value) is float:
            assert math.isfinite(value), where


# --------------------------------------------------------------------------- compute_metrics
def test_hand_computed_three_class_example_where_ua_differs_from_wa():
    m = compute_metrics(Y_TRUE, Y_PRED, ABC)
    assert set(m) == CONTRACT_KEYS
    assert m["wa"] == pytest.approx(0.8)
    assert m["ua"] == pytest.approx(2 / 3)
    assert m["ua"] != pytest.approx(m["wa"])
    assert m["macro_f1"] == pytest.approx(46 / 63)
    assert m["n"] == 10 and m["skipped"] == 0
    assert m["labels"] == ABC
    assert m["confusion"] == [[6, 0, 0], [1, 1, 0], [1, 0, 1]]
    expected = {"a": (0.75, 1.0, 6 / 7, 6), "b": (1.0, 0.5, 2 / 3, 2), "c": (1.0, 0.5, 2 / 3, 2)}
    assert list(m["per_class"]) == ABC
    for label, (p, r, f, s) in expected.items():
        c = m["per_class"][label]
        assert set(c) == {"precision", "recall", "f1", "support"}
        assert c["precision"] == pytest.approx(p)
        assert c["recall"] == pytest.approx(r)
        assert c["f1"] == pytest.approx(f)
        assert c["support"] == s


def test_confusion_rows_are_true_and_columns_predicted():
    m = compute_metrics([0, 0, 0], [1, 1, 2], ABC)
    assert m["confusion"] == [[0, 2, 1], [0, 0, 0], [0, 0, 0]]
    assert [m["per_class"][label]["support"] for label in ABC] == [3, 0, 0]


def test_classes_without_support_are_left_out_of_ua_and_macro_f1():
    # 7 labels, only neutral and happy occur; one neutral is mistaken for sad.
    #   neutral: P 1/1, R 1/2, F1 2/3      happy: P 2/2, R 1, F1 1      sad: P 0/1 -> 0
    m = compute_metrics([0, 0, 1, 1], [0, 2, 1, 1], EMOTIONS)
    assert m["ua"] == pytest.approx((0.5 + 1.0) / 2)  # not divided by 7
    assert m["wa"] == pytest.approx(3 / 4)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["per_class"]["sad"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    for label in EMOTIONS[3:]:
        assert m["per_class"][label] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert len(m["confusion"]) == 7 and all(len(row) == 7 for row in m["confusion"])
    assert m["confusion"][0][2] == 1


def test_a_class_that_is_never_predicted_has_zero_precision_not_nan():
    # Always "a": recall 1,0,0 -> UA 1/3; P(a) = 2/6, F1(a) = 2*(1/3)*1/(4/3) = 1/2.
    m = compute_metrics([0, 1, 2, 0, 1, 2], [0] * 6, ABC)
    assert m["ua"] == pytest.approx(1 / 3)
    assert m["wa"] == pytest.approx(1 / 3)
    assert m["per_class"]["a"]["precision"] == pytest.approx(1 / 3)
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["precision"] == 0.0
    assert m["macro_f1"] == pytest.approx(0.5 / 3)


def test_perfect_predictions_score_one():
    m = compute_metrics([0, 1, 2, 2], [0, 1, 2, 2], ABC)
    assert m["ua"] == m["wa"] == m["macro_f1"] == 1.0
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]


def test_nothing_scored_gives_zeros_not_nan():
    m = compute_metrics([], [], EMOTIONS, skipped=4)
    assert (m["ua"], m["wa"], m["macro_f1"], m["n"], m["skipped"]) == (0.0, 0.0, 0.0, 0, 4)
    assert m["confusion"] == [[0] * 7 for _ in range(7)]
    assert_plain_json(m)


def test_skipped_is_passed_through_and_not_scored():
    m = compute_metrics(Y_TRUE, Y_PRED, ABC, skipped=5)
    assert m["skipped"] == 5 and m["n"] == 10
    assert m["wa"] == pytest.approx(0.8)


def test_numpy_inputs_give_plain_json_types():
    m = compute_metrics(np.array(Y_TRUE, dtype=np.int64), np.array(Y_PRED, dtype=np.int32), tuple(ABC),
                        skipped=np.int64(2))
    assert_plain_json(m)
    assert m["labels"] == ABC and type(m["labels"]) is list
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_label_names_are_accepted_as_well_as_indices():
    names_true = [ABC[i] for i in Y_TRUE]
    names_pred = [ABC[i] for i in Y_PRED]
    assert compute_metrics(names_true, names_pred, ABC) == compute_metrics(Y_TRUE, Y_PRED, ABC)


def test_every_contract_field_is_in_range_on_random_data():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 7, 200))
    m = compute_metrics(y_true, y_pred, EMOTIONS)
    assert_plain_json(m)
    for key in ("ua", "wa", "macro_f1"):
        assert 0.0 <= m[key] <= 1.0
    conf = np.array(m["confusion"])
    assert conf.sum() == m["n"] == 200
    assert m["wa"] == pytest.approx(np.trace(conf) / 200)
    recalls = np.diag(conf) / conf.sum(axis=1)
    assert m["ua"] == pytest.approx(recalls.mean())
    assert sum(c["support"] for c in m["per_class"].values()) == 200


@pytest.mark.parametrize("y_true,y_pred,labels", [
    ([0, 1], [0], ABC),            # lengths differ
    ([0, 3], [0, 1], ABC),         # index out of range
    ([0, -1], [0, 1], ABC),        # negative index
    ([0, 1], [0, 1.5], ABC),       # not an integer
    (["a", "x"], ["a", "b"], ABC),  # unknown label name
    ([0], [0], []),                # no labels
    ([0], [0], ["a", "a"]),        # duplicate labels
])
def test_invalid_input_is_refused(y_true, y_pred, labels):
    with pytest.raises(ValueError):
        compute_metrics(y_true, y_pred, labels)


# --------------------------------------------------------------------------- format_report
def _confusion_section(report: str) -> list[list[str]]:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lower().startswith("confusion matrix"))
    return [line.split() for line in lines[start + 1:] if line.strip()]


def test_report_lists_every_class_with_its_numbers():
    report = format_report(compute_metrics(Y_TRUE, Y_PRED, ["neutral", "happy", "surprised"], skipped=3))
    rows = {}
    for line in report.splitlines():  # the first line per label is its report row
        if line.strip():
            rows.setdefault(line.split()[0], line.split()[1:])
    assert rows["neutral"][:4] == ["0.750", "1.000", "0.857", "6"]
    assert rows["happy"][:4] == ["1.000", "0.500", "0.667", "2"]
    assert rows["surprised"][:4] == ["1.000", "0.500", "0.667", "2"]
    for header in ("precision", "recall", "f1-score", "support"):
        assert header in report
    assert "0.800" in report and "0.667" in report and "0.730" in report  # WA, UA, macro-F1
    assert "skipped=3" in report


def test_report_prints_the_labelled_confusion_matrix():
    labels = ["neutral", "happy", "surprised"]
    section = _confusion_section(format_report(compute_metrics(Y_TRUE, Y_PRED, labels)))
    assert section[0] == labels  # column header: predicted labels
    assert section[1:] == [["neutral", "6", "0", "0"], ["happy", "1", "1", "0"], ["surprised", "1", "0", "1"]]


def test_report_handles_empty_classes_and_survives_a_json_round_trip():
    m = json.loads(json.dumps(compute_metrics([0, 0, 1, 1], [0, 2, 1, 1], EMOTIONS)))
    report = format_report(m)
    assert all(label in report for label in EMOTIONS)
    assert "nan" not in report.lower()
    section = _confusion_section(report)
    assert section[0] == EMOTIONS and len(section) == 8
    assert section[1] == ["neutral", "1", "0", "1", "0", "0", "0", "0"]


def test_report_of_nothing_scored():
    report = format_report(compute_metrics([], [], ABC, skipped=2))
    assert "nan" not in report.lower() and "skipped=2" in report


# --------------------------------------------------------------------------- plots
def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 2000  # a rendered figure, not an empty stub
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas


def test_plot_confusion_writes_a_png(tmp_path):
    m = compute_metrics(Y_TRUE, Y_PRED, ABC)
    out = plot_confusion(m, tmp_path / "sub" / "dir" / "confusion.png", title="test run")
    assert out == tmp_path / "sub" / "dir" / "confusion.png"
    _assert_png(out)


def test_plot_confusion_with_empty_rows_and_nothing_scored_warns_nothing(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a 0/0 row normalisation
        _assert_png(plot_confusion(compute_metrics([0, 0, 1], [0, 6, 1], EMOTIONS), tmp_path / "seven.png"))
        _assert_png(plot_confusion(compute_metrics([], [], EMOTIONS), tmp_path / "none.png"))


def test_plot_confusion_accepts_a_path_string_and_leaves_pyplot_alone(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    path = str(tmp_path / "c.png")
    plot_confusion(compute_metrics(Y_TRUE, Y_PRED, ABC), path)
    _assert_png(tmp_path / "c.png")
    assert plt.get_fignums() == before  # no figures leaked into pyplot


def test_split_curves_sorts_losses_from_scores_and_ignores_non_curves():
    history = {"train_loss": [1.0, 0.8], "val_loss": [1.1, 0.9], "train_acc": [0.3, 0.5],
               "val_ua": [0.25, 0.4], "val_wa": [0.3, None], "lr": [1e-3, 5e-4],
               "best_epoch": 2, "note": "abc", "empty": [], "nested": {"x": [1]}}
    losses, scores = split_curves(history)
    assert losses == ["train_loss", "val_loss"]
    assert scores == ["train_acc", "val_ua", "val_wa", "lr"]


def test_plot_curves_writes_a_png(tmp_path):
    history = {"train_loss": [1.9, 1.4, 1.1, 0.9], "val_loss": [1.95, 1.6, 1.5, 1.55],
               "train_acc": [0.2, 0.4, 0.55, 0.65], "val_ua": [0.18, 0.3, 0.38, 0.37]}
    _assert_png(plot_curves(history, tmp_path / "curves.png", title="fold 1"))


@pytest.mark.parametrize("history", [
    {"train_loss": [1.0, 0.5]},                          # losses only
    {"val_ua": [0.1, 0.2, 0.3]},                         # scores only
    {"train_loss": [1.0], "val_ua": [0.5]},              # a single epoch
    {"train_loss": [1.0, float("nan"), 0.5], "val_ua": [None, 0.2, 0.3], "epochs": 3},  # gaps, scalars
    {},                                                  # nothing at all
])
def test_plot_curves_plots_whatever_is_there(history, tmp_path):
    _assert_png(plot_curves(history, tmp_path / "c.png"))


# --------------------------------------------------------------------------- summarize_folds
def test_summarize_folds_mean_and_sample_std():
    folds = [compute_metrics(Y_TRUE, Y_PRED, ABC),                 # ua 2/3, wa 0.8, f1 46/63
             compute_metrics([0, 1, 2, 2], [0, 1, 2, 2], ABC),     # all 1.0
             compute_metrics([0, 1, 2, 0, 1, 2], [0] * 6, ABC, skipped=2)]  # ua 1/3, wa 1/3, f1 1/6
    s = summarize_folds(folds)
    assert s["folds"] == 3 and s["n"] == 20 and s["skipped"] == 2
    expected = {"ua": [2 / 3, 1.0, 1 / 3], "wa": [0.8, 1.0, 1 / 3], "macro_f1": [46 / 63, 1.0, 1 / 6]}
    for key, values in expected.items():
        assert s[key]["values"] == pytest.approx(values)
        mean = sum(values) / 3
        sample_std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)  # ddof = 1
        assert s[key]["mean"] == pytest.approx(mean)
        assert s[key]["std"] == pytest.approx(sample_std)
    assert_plain_json(s)


def test_summarize_folds_known_numbers():
    s = summarize_folds([{"ua": 0.5, "wa": 0.6, "macro_f1": 0.4}, {"ua": 0.7, "wa": 0.6, "macro_f1": 0.2}])
    assert s["ua"]["mean"] == pytest.approx(0.6)
    assert s["ua"]["std"] == pytest.approx(math.sqrt(0.02))  # sample std, not the population's 0.1
    assert s["wa"]["std"] == 0.0
    assert s["macro_f1"]["values"] == [0.4, 0.2]


def test_summarize_a_single_fold_has_zero_std_not_nan():
    s = summarize_folds([compute_metrics(Y_TRUE, Y_PRED, ABC)])
    assert s["ua"]["std"] == 0.0 and s["ua"]["mean"] == pytest.approx(2 / 3)
    json.dumps(s, allow_nan=False)


def test_summarize_no_folds_is_an_error():
    with pytest.raises(ValueError):
        summarize_folds([])


# --------------------------------------------------------------------------- prediction shares
def test_prediction_shares_against_true_shares_by_hand():
    """Y_TRUE/Y_PRED: true shares a 6/10, b 2/10, c 2/10; predicted a 8/10, b 1/10, c 1/10;
    collapse = 0.8 / 0.6."""
    shares = prediction_shares(compute_metrics(Y_TRUE, Y_PRED, ABC))
    assert shares["true"] == pytest.approx({"a": 0.6, "b": 0.2, "c": 0.2})
    assert shares["predicted"] == pytest.approx({"a": 0.8, "b": 0.1, "c": 0.1})
    assert shares["most_predicted"] == "a" and shares["collapse"] == pytest.approx(0.8 / 0.6)
    assert shares["outside"] == 0.0  # every label predicted is one some file has
    assert_plain_json(shares)


def test_a_label_the_corpus_lacks_counts_as_predicted_and_wrong():
    """Four classes of seven present; half the files called 'fearful', which none are: the
    collapse ratio sees it although UA is over the four own classes only."""
    true = [0, 0, 1, 1, 2, 2, 3, 3]
    pred = [0, 4, 1, 4, 4, 4, 3, 3]
    m = compute_metrics(true, pred, EMOTIONS)
    assert m["ua"] == pytest.approx((0.5 + 0.5 + 0 + 1) / 4)
    shares = prediction_shares(m)
    assert shares["true"]["fearful"] == 0 and shares["predicted"]["fearful"] == pytest.approx(0.5)
    assert shares["most_predicted"] == "fearful" and shares["collapse"] == pytest.approx(0.5 / 0.25)
    assert shares["outside"] == pytest.approx(0.5)


def test_shares_of_a_model_that_predicts_like_the_truth_and_of_nothing_scored():
    assert prediction_shares(compute_metrics([0, 1, 1, 2], [1, 0, 1, 2], ABC))["collapse"] == pytest.approx(1.0)
    empty = prediction_shares(compute_metrics([], [], ABC))
    assert empty["collapse"] == 0.0 and set(empty["predicted"].values()) == {0.0}


def test_summarize_corpora_names_the_worst_corpus_and_collapse():
    good = compute_metrics([0, 1, 2, 3], [0, 1, 2, 3], EMOTIONS)  # UA 1, collapse 1
    collapsed = compute_metrics([0, 1, 2, 3], [4, 4, 4, 3], EMOTIONS)  # UA 1/4, collapse 3
    out = summarize_corpora([good, collapsed], ["tess", "turevdb"])
    assert out["corpora"] == ["tess", "turevdb"] and out["folds"] == 2
    assert out["ua"]["mean"] == pytest.approx(0.625)
    assert (out["ua"]["worst"], out["ua"]["worst_corpus"]) == (pytest.approx(0.25), "turevdb")
    assert out["collapse"]["values"] == pytest.approx([1.0, 3.0])
    assert (out["collapse"]["worst"], out["collapse"]["worst_corpus"]) == (pytest.approx(3.0), "turevdb")
    assert_plain_json(out)
    with pytest.raises(ValueError):
        summarize_corpora([good], ["tess", "ased"])


def test_plot_shares_writes_one_panel_per_corpus(tmp_path):
    panels = {c: compute_metrics([0, 1, 2, 3], [4, 4, 4, 3], EMOTIONS) for c in ("tess", "ased", "turevdb")}
    _assert_png(plot_shares(panels, tmp_path / "shares.png", title="t"))
