"""Classification metrics, text reports and plots for emotion recognition.

Pure functions on plain lists (numpy only, no scikit-learn). :func:`compute_metrics`
returns the object that ``evaluate --json`` prints (see CONTRACTS.md), built from
plain Python ints and floats so it goes straight into ``json.dumps``.

Conventions
-----------
* ``ua`` (unweighted accuracy, a.k.a. balanced accuracy) and ``macro_f1`` average
  over the classes that occur in ``y_true`` (support > 0): a class absent from
  the test set has no recall to speak of and would otherwise drag the mean to 0.
* Undefined ratios (precision of a never-predicted class, anything on an empty
  set) are 0.0, never NaN, so the result stays valid JSON.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

SCORE_KEYS = ("ua", "wa", "macro_f1")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _to_indices(values: Sequence, labels: list[str], name: str) -> np.ndarray:
    """Class indices from ints (or from label names, as a convenience)."""
    values = list(values)
    index = {label: i for i, label in enumerate(labels)}
    out = []
    for v in values:
        if isinstance(v, str):
            if v not in index:
                raise ValueError(f"{name}: unknown label {v!r}; expected one of {labels}")
            out.append(index[v])
            continue
        if isinstance(v, (bool, np.bool_)) or not float(v).is_integer():
            raise ValueError(f"{name}: {v!r} is not a class index")
        i = int(v)
        if not 0 <= i < len(labels):
            raise ValueError(f"{name}: class index {i} is outside 0..{len(labels) - 1}")
        out.append(i)
    return np.asarray(out, dtype=np.int64)


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str],
                    skipped: int = 0) -> dict:
    """The ``evaluate --json`` metrics object for class indices ``y_true``/``y_pred``.

    ``labels[i]`` names class ``i``; ``skipped`` counts files that were not scored
    (no mapped label, undecodable) and is passed through.
    """
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("labels must not be empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    true = _to_indices(y_true, labels, "y_true")
    pred = _to_indices(y_pred, labels, "y_pred")
    k = len(labels)

    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    tp = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    n = int(confusion.sum())

    per_class = {}
    recalls, f1s = [], []
    for i, label in enumerate(labels):
        precision = _ratio(tp[i], predicted[i])
        recall = _ratio(tp[i], support[i])
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support[i])}
        if support[i] > 0:
            recalls.append(recall)
            f1s.append(f1)

    return {
        "ua": float(np.mean(recalls)) if recalls else 0.0,
        "wa": _ratio(tp.sum(), n),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "n": n,
        "skipped": int(skipped),
        "labels": labels,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def prediction_shares(metrics: Mapping) -> dict:
    """How often each label is predicted against how often it is true: the collapse detector.

    Returns ``{"predicted": {label: share}, "true": {label: share}, "most_predicted": label,
    "collapse": largest predicted share / largest true share, "outside": share of files given
    a label that no file has}``; a model that spreads its predictions like the truth scores a
    collapse of 1, one that calls every file the same label 1 / (largest true share). Nothing
    scored gives zero shares and a collapse of 0.0.
    """
    labels = list(metrics["labels"])
    confusion = np.asarray(metrics["confusion"], dtype=np.int64).reshape(len(labels), len(labels))
    n = int(confusion.sum())
    predicted = [_ratio(v, n) for v in confusion.sum(axis=0)]
    true = [_ratio(v, n) for v in confusion.sum(axis=1)]
    return {"predicted": dict(zip(labels, predicted)), "true": dict(zip(labels, true)),
            "most_predicted": labels[int(np.argmax(predicted))], "collapse": _ratio(max(predicted), max(true)),
            "outside": float(sum(p for p, t in zip(predicted, true) if t == 0))}


# --------------------------------------------------------------------------- text report
def format_report(metrics: Mapping) -> str:
    """A classification report (like scikit-learn's) followed by the labelled confusion matrix."""
    labels = list(metrics["labels"])
    per_class = metrics["per_class"]
    confusion = np.asarray(metrics["confusion"], dtype=np.int64).reshape(len(labels), len(labels))
    n = int(metrics.get("n", confusion.sum()))
    width = max(len("weighted avg"), *(len(label) for label in labels))

    head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}"
    lines = [head, ""]
    for label in labels:
        c = per_class[label]
        lines.append(f"{label:>{width}}  {c['precision']:>9.3f}  {c['recall']:>9.3f}  "
                     f"{c['f1']:>9.3f}  {int(c['support']):>9d}")
    lines.append("")

    present = [per_class[label] for label in labels if per_class[label]["support"] > 0]
    total = sum(int(c["support"]) for c in present)
    blank = f"{'':>9}"
    lines.append(f"{'accuracy (WA)':>{width}}  {blank}  {blank}  {metrics['wa']:>9.3f}  {n:>9d}")
    lines.append(f"{'balanced (UA)':>{width}}  {blank}  {metrics['ua']:>9.3f}  {blank}  {n:>9d}")
    if present:
        macro = [float(np.mean([c[key] for c in present])) for key in ("precision", "recall", "f1")]
        weighted = [_ratio(sum(c[key] * c["support"] for c in present), total)
                    for key in ("precision", "recall", "f1")]
        for name, row in (("macro avg", macro), ("weighted avg", weighted)):
            lines.append(f"{name:>{width}}  {row[0]:>9.3f}  {row[1]:>9.3f}  {row[2]:>9.3f}  {total:>9d}")
    skipped = int(metrics.get("skipped", 0))
    lines.append("")
    lines.append(f"UA {metrics['ua']:.3f}  WA {metrics['wa']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
                 f"(n={n}, skipped={skipped})")
    lines.append("")
    lines.append("Confusion matrix (rows: true, columns: predicted)")
    cell = max(5, *(len(label) for label in labels), len(str(int(confusion.max(initial=0))))) + 1
    lines.append(f"{'':>{width}}" + "".join(f"{label:>{cell}}" for label in labels))
    for label, row in zip(labels, confusion):
        lines.append(f"{label:>{width}}" + "".join(f"{int(v):>{cell}d}" for v in row))
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots
def _new_figure(figsize):
    # Figure + Agg canvas directly: no pyplot state, no global backend switch, thread-safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(os.fspath(path), format="png", bbox_inches="tight")
    return path


def plot_confusion(metrics: Mapping, path, title: str | None = None) -> Path:
    """Write a PNG of the confusion matrix: row-normalised percentages with the counts."""
    labels = list(metrics["labels"])
    k = len(labels)
    counts = np.asarray(metrics["confusion"], dtype=np.int64).reshape(k, k)
    rows = counts.sum(axis=1, keepdims=True)
    percent = np.divide(100.0 * counts, rows, out=np.zeros((k, k)), where=rows > 0)

    side = 1.6 + 0.9 * k
    fig = _new_figure((side + 1.2, side))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(percent, cmap="Blues", vmin=0.0, vmax=100.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of true class")
    for i in range(k):
        for j in range(k):
            text = f"{percent[i, j]:.0f}%\n({counts[i, j]})" if rows[i, 0] else "-"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if percent[i, j] > 55 else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticks(range(k))
    ax.set_yticklabels([f"{label} ({int(rows[i, 0])})" for i, label in enumerate(labels)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (support)")
    summary = ""
    if all(key in metrics for key in SCORE_KEYS):
        summary = f"UA {metrics['ua']:.1%}  WA {metrics['wa']:.1%}  macro-F1 {metrics['macro_f1']:.3f}"
    ax.set_title("\n".join(t for t in (title or "Confusion matrix", summary) if t), fontsize=10)
    return _save(fig, path)


def _is_curve(values) -> bool:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence | np.ndarray):
        return False
    try:
        for v in values:
            if v is not None:
                float(v)
    except (TypeError, ValueError):
        return False
    return len(values) > 0


def split_curves(history: Mapping) -> tuple[list[str], list[str]]:
    """Keys of ``history`` that hold numeric curves: (loss keys, score keys such as acc/UA/F1)."""
    curves = [key for key, values in history.items() if _is_curve(values)]
    losses = [key for key in curves if "loss" in key.lower()]
    return losses, [key for key in curves if key not in losses]


def plot_curves(history: Mapping[str, Sequence[float]], path, title: str | None = None) -> Path:
    """Write a PNG with the loss curves (left) and the accuracy/UA curves (right) per epoch.

    Every key holding a list of numbers is plotted; ``None``/NaN entries leave gaps,
    other keys (scalars, strings) are ignored.
    """
    from matplotlib.ticker import MaxNLocator

    losses, scores = split_curves(history)
    fig = _new_figure((11, 4))
    panels = ((fig.add_subplot(1, 2, 1), losses, "loss"), (fig.add_subplot(1, 2, 2), scores, "accuracy / UA"))
    for ax, keys, ylabel in panels:
        for key in keys:
            y = np.array([np.nan if v is None else float(v) for v in history[key]], dtype=float)
            x = np.arange(1, len(y) + 1)
            style = "--" if key.lower().startswith("train") else "-"
            ax.plot(x, y, style, marker="o" if len(y) <= 30 else None, markersize=3, label=key)
            if ylabel != "loss" and key.lower().startswith("val") and np.isfinite(y).any():
                best = int(np.nanargmax(y))
                ax.annotate(f"{y[best]:.3f}", (x[best], y[best]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if keys:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_ensemble_sizes(sizes: Sequence[Mapping], path, title: str | None = None) -> Path:
    """Write a PNG of held-out UA against ensemble size: the mean over subsets, their range shaded."""
    fig = _new_figure((6, 4))
    ax = fig.add_subplot(1, 1, 1)
    k = [s["k"] for s in sizes]
    for key, label in (("clean_ua", "clean"), ("degraded_ua", "degraded")):
        if all(key in s for s in sizes):
            mean = [100 * s[key]["mean"] for s in sizes]
            line, = ax.plot(k, mean, marker="o", label=f"{label} (mean over subsets)")
            ax.fill_between(k, [100 * s[key]["min"] for s in sizes], [100 * s[key]["max"] for s in sizes],
                            color=line.get_color(), alpha=0.15)
            for x, y in zip(k, mean):
                ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xticks(k)
    ax.set_xlabel("networks averaged (k)")
    ax.set_ylabel("held-out UA % (mean of folds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------- cross-validation
def summarize_folds(fold_metrics: Sequence[Mapping]) -> dict:
    """Mean and sample standard deviation (ddof=1) of UA, WA and macro-F1 over folds.

    Returns ``{"folds": k, "n": files scored in all, "skipped": ...,
    "ua"|"wa"|"macro_f1": {"mean", "std", "values": [per fold]}}``; the std of a
    single fold is 0.0.
    """
    fold_metrics = list(fold_metrics)
    if not fold_metrics:
        raise ValueError("summarize_folds needs at least one fold")
    out: dict = {"folds": len(fold_metrics),
                 "n": int(sum(int(m.get("n", 0)) for m in fold_metrics)),
                 "skipped": int(sum(int(m.get("skipped", 0)) for m in fold_metrics))}
    for key in SCORE_KEYS:
        values = [float(m[key]) for m in fold_metrics]
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out[key] = {"mean": float(np.mean(values)), "std": std, "values": values}
    return out


def summarize_corpora(corpus_metrics: Sequence[Mapping], corpora: Sequence[str]) -> dict:
    """:func:`summarize_folds` over held-out corpora (one metrics object each, in ``corpora``'s
    order), plus the worst corpus's UA and the collapse ratio of each (:func:`prediction_shares`).

    Adds ``"corpora"``, ``"ua": {..., "worst", "worst_corpus"}`` and ``"collapse": {"values",
    "worst", "worst_corpus"}``.
    """
    corpora = list(corpora)
    if len(corpora) != len(corpus_metrics):
        raise ValueError(f"{len(corpus_metrics)} results for {len(corpora)} corpora")
    out = {**summarize_folds(corpus_metrics), "corpora": corpora}
    ua = out["ua"]["values"]
    out["ua"].update(worst=min(ua), worst_corpus=corpora[int(np.argmin(ua))])
    collapse = [prediction_shares(m)["collapse"] for m in corpus_metrics]
    out["collapse"] = {"values": collapse, "worst": max(collapse), "worst_corpus": corpora[int(np.argmax(collapse))]}
    return out


def plot_shares(panels: Mapping[str, Mapping], path, title: str | None = None, limit: float = 1.5) -> Path:
    """Write a PNG with one panel per held-out corpus (``{corpus: metrics}``): the share of files
    predicted as each label beside its true share, and the line a label's predicted share must
    stay under (``limit`` times the largest true share)."""
    n = max(1, len(panels))
    cols = min(n, 2)
    rows = -(-n // cols)
    fig = _new_figure((6.5 * cols, 3.6 * rows))
    for k, (corpus, metrics) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        shares = prediction_shares(metrics)
        labels = list(shares["true"])
        x = np.arange(len(labels))
        ax.bar(x - 0.2, [100 * shares["true"][label] for label in labels], 0.4, color="0.7", label="true")
        ax.bar(x + 0.2, [100 * shares["predicted"][label] for label in labels], 0.4, color="tab:red",
               label="predicted")
        ax.axhline(100 * limit * max(shares["true"].values()), color="k", linestyle="--", linewidth=1,
                   label=f"{limit:g} x largest true share")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("% of files")
        ax.set_ylim(0, 100)
        ax.set_title(f"{corpus}: UA {metrics['ua']:.1%}, collapse {shares['collapse']:.2f}", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    fig.subplots_adjust(hspace=0.55, wspace=0.2)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)
