"""Calibrate and ship the Whisper head (issue 12): held-out temperature, the `uncertain` threshold,
the final head on every corpus, written as a checkpoint the app loads.

    python scripts/whisper_probe.py embed --part 0/2 & python scripts/whisper_probe.py embed --part 1/2
    python scripts/ship_whisper_head.py --recipe gainaug                               # -> weights/whisper_head.pt
    python scripts/ship_whisper_head.py ... --exclude turevdb --out /tmp/no_turevdb.pt  # a LOCO fold, for an
                                                                                       # end-to-end check

Every choice here is made on held-out corpora only: each corpus's predictions come from a head
fitted on the other three (leave-one-corpus-out); the layer and C are those with the best mean
held-out UA over the four corpora (a selection on them: the nested probe's figures, where every
choice is made inside the training side, are the unbiased ones). The temperature minimises the mean over those four held-out corpora of the negative
log-likelihood of the app's file-level probabilities (the mean of the speech windows'
softmax(logits / T)); the threshold is the lowest calibrated confidence at which the labels kept
are right at least ``--sure-accuracy`` of the time (mean over the held-out corpora). The final
head is then fitted on all four corpora, the temperature folded into its linear layer (with
``--plain-network`` or ``--plain-prior``, the model divides their result by it instead).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import whisper_probe as P  # noqa: E402

from ser_model.checkpoint import register, save_checkpoint  # noqa: E402
from ser_model.data import limit_blas_threads  # noqa: E402
from ser_model.labels import EMOTIONS  # noqa: E402
from ser_model.model import ModelConfig, build_model  # noqa: E402
from ser_model import whisper as W  # noqa: E402

TEMPERATURES = np.geomspace(0.25, 8.0, 81)
THRESHOLDS = np.round(np.arange(0.15, 0.91, 0.01), 2)
REPORT = ROOT / "reports" / "whisper_head_calibration.json"
PLOT = ROOT / "reports" / "whisper_head_reliability.png"


def file_probs(logits: np.ndarray, owner: np.ndarray, files: np.ndarray, temperature: float,
               prior: np.ndarray | None = None) -> np.ndarray:
    """The app's file probabilities at this temperature: the mean of the windows' calibrated
    probabilities. A window's logits of (heads, classes) are a mix (``ModelConfig.plain_network``):
    the mean of each head's softmax; then times ``prior`` per label (``plain_prior``); the
    temperature divides the log of the result, as ``WhisperHead.plain`` does (for one head without
    a prior that is softmax(logits / T), the temperature folded into the linear layer)."""
    logp = torch.log_softmax(torch.from_numpy(np.asarray(logits, dtype=np.float64)), -1)
    if logp.ndim == 3:
        logp = torch.logsumexp(logp, 1) - np.log(logp.shape[1])
    if prior is not None:
        logp = logp + torch.log(torch.from_numpy(np.asarray(prior, dtype=np.float64)))
    return P.file_mean(torch.softmax(logp / temperature, -1).numpy(), owner, files)


def fold_probs(fold: dict, variant: str, temperature: float) -> np.ndarray:
    """``file_probs`` of a held-out fold (``held_out``) under one test variant, with its prior if any."""
    return file_probs(*fold[variant], fold["files"], temperature, fold.get("prior"))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, list]:
    """Expected calibration error of the top label (equal-width bins) and the diagram's points."""
    conf, right = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    total, points = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - right[m].mean())
            points.append((float(conf[m].mean()), float(right[m].mean()), int(m.sum())))
    return float(total), points


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))


def fit_head(prober: P.Prober, recipe: P.Recipe, files: np.ndarray, layers, c: float):
    return prober.fit(recipe, files, layers, [c])[c]


def held_out(prober: P.Prober, recipe: P.Recipe, layers, c: float, variant: str = "clean") -> dict:
    """Per corpus: window logits of a head fitted on the other corpora."""
    t = prober.t
    out = {}
    for corpus in P.CORPORA:
        test = prober.scored(recipe, np.flatnonzero(t.corpus == corpus))  # an enrolling recipe's clips do not count
        model = fit_head(prober, recipe, np.flatnonzero(t.corpus != corpus), layers, c)
        out[corpus] = {"files": test, "y": t.label[test],
                       **{v: prober.window_logits(model, recipe, test, v, layers) for v in ("clean", "degraded")}}
        print(f"  held out {corpus}: {len(test)} files", flush=True)
    return out


def with_network(folds: dict, network_folds: dict) -> dict:
    """Held-out folds whose logits are (windows, 2, classes): the linear head's beside the network's."""
    out = {}
    for corpus, f in folds.items():
        g = network_folds[corpus]
        out[corpus] = {**f, **{v: (np.stack([f[v][0], g[v][0]], 1), f[v][1]) for v in ("clean", "degraded")}}
        assert all(np.array_equal(f[v][1], g[v][1]) for v in ("clean", "degraded"))
    return out


def choose_temperature(folds: dict) -> float:
    scores = [np.mean([nll(fold_probs(f, "clean", T), f["y"]) for f in folds.values()])
              for T in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(scores))])


def choose_threshold(folds: dict, temperature: float, sure_accuracy: float) -> tuple[float, dict]:
    return pick_threshold([(fold_probs(f, "clean", temperature), f["y"]) for f in folds.values()],
                          sure_accuracy)


def pick_threshold(held_out_probs: list[tuple[np.ndarray, np.ndarray]], sure_accuracy: float) -> tuple[float, dict]:
    """The lowest confidence at which the labels kept are right ``sure_accuracy`` of the time (mean
    over the held-out corpora's (file probabilities, labels)), and every candidate's figures."""
    rows = {}
    for th in THRESHOLDS:
        accs, kept = [], []
        for probs, y in held_out_probs:
            sure = probs.max(1) >= th
            kept.append(sure.mean())
            accs.append((probs.argmax(1)[sure] == y[sure]).mean() if sure.any() else np.nan)
        rows[float(th)] = {"accuracy_of_sure": float(np.nanmean(accs)), "share_sure": float(np.mean(kept))}
    ok = [th for th, r in rows.items() if r["accuracy_of_sure"] >= sure_accuracy]
    return (min(ok) if ok else float(THRESHOLDS[-1])), rows


def corpus_row(cal: np.ndarray, degraded: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """A held-out corpus's figures from its calibrated file probabilities (and degraded ones)."""
    sure = cal.max(1) >= threshold
    s = P.score(y, cal)
    return {"ua": s["ua"], "wa": s["wa"], "collapse": s["collapse"], "outside": s["outside"],
            "ua_degraded": P.score(y, degraded)["ua"], "n": int(len(y)),
            "ece_calibrated": ece(cal, y)[0], "nll_calibrated": nll(cal, y), "share_sure": float(sure.mean()),
            "accuracy_sure": float((cal.argmax(1)[sure] == y[sure]).mean()) if sure.any() else None,
            "accuracy_unsure": float((cal.argmax(1)[~sure] == y[~sure]).mean()) if (~sure).any() else None,
            "pred_share": s["pred_share"], "recall": s["recall"]}


def plot_reliability(before: dict, after: dict, temperature: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    for ax, (title, per) in zip(axes, (("raw (T = 1)", before), (f"calibrated (T = {temperature:.2f})", after))):
        ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
        for corpus, (e, points) in per.items():
            xs, ys, ns = zip(*points)
            ax.plot(xs, ys, marker="o", label=f"{corpus} (ECE {100 * e:.1f})")
        ax.set_title(f"held-out corpora, {title}")
        ax.set_xlabel("confidence of the top label (file)")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share of those labels that are right")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def choose(prober, recipe, layer_names, cs) -> tuple[str, dict, dict]:
    """The (layer set, C) with the best mean held-out UA over the four corpora, every candidate's
    mean, and the best one's held-out predictions."""
    grid, best, best_folds = {}, None, None
    for name in layer_names:
        for c in cs:
            folds = held_out(prober, recipe, P.LAYER_SETS[name], c)
            key = f"{name} C={c:g}"
            grid[key] = float(np.mean([P.score(f["y"], fold_probs(f, "clean", 1.0))["ua"]
                                       for f in folds.values()]))
            print(f"  {recipe.name} {key}: mean held-out UA {grid[key]:.3f}", flush=True)
            if best is None or grid[key] > grid[best]:  # the first of equals, as max() picks
                best, best_folds = key, folds
    return best, grid, best_folds


def calibrate(recipe, folds: dict, sure_accuracy) -> dict:
    """From a recipe's held-out predictions: temperature, threshold and the per-corpus table."""
    temperature = choose_temperature(folds)
    threshold, rows = choose_threshold(folds, temperature, sure_accuracy)
    before, after, per_corpus = {}, {}, {}
    for corpus, f in folds.items():
        raw, cal = fold_probs(f, "clean", 1.0), fold_probs(f, "clean", temperature)
        deg = fold_probs(f, "degraded", temperature)
        before[corpus], after[corpus] = ece(raw, f["y"]), ece(cal, f["y"])
        row = per_corpus[corpus] = {**corpus_row(cal, deg, f["y"], threshold),
                                    "ece_raw": before[corpus][0], "nll_raw": nll(raw, f["y"])}
        print(f"  {recipe.name} {corpus:8s} UA {100 * row['ua']:.1f}  ECE {100 * before[corpus][0]:.1f} -> "
              f"{100 * after[corpus][0]:.1f}  sure {100 * row['share_sure']:.0f} %", flush=True)
    print(f"  {recipe.name}: temperature {temperature:.3f}, uncertain below {threshold:.2f}", flush=True)
    return {"temperature": temperature, "uncertain_below": threshold, "per_corpus": per_corpus, "thresholds": rows,
            "reliability": {"raw": before, "calibrated": after},
            "mean_ua": float(np.mean([r["ua"] for r in per_corpus.values()]))}


def calibrate_mix(prober, heads: dict, temperatures: dict, sure_accuracy: float) -> dict:
    """The session mix (``ModelConfig.session_mix``) on held-out corpora: per corpus, heads fitted
    on the other three, a four-clip session of each held-out speaker (not scored); the uncertain
    threshold by the same rule as the heads'."""
    import session_mix_probe as M

    t = prober.t
    _, chosen = P.enrolment(t, 4, source="any")
    folds = {}
    for corpus in P.CORPORA:
        keep: dict = {}
        M.split_scores(prober, np.flatnonzero(t.corpus != corpus), np.flatnonzero(t.corpus == corpus), chosen,
                       keep, heads, temperatures)
        folds[corpus] = keep
        print(f"  session mix, held out {corpus}: UA {100 * P.score(keep['y'], keep['clean'])['ua']:.1f}", flush=True)
    threshold, rows = pick_threshold([(f["clean"], f["y"]) for f in folds.values()], sure_accuracy)
    per_corpus = {corpus: corpus_row(f["clean"], f["degraded"], f["y"], threshold) for corpus, f in folds.items()}
    print(f"  session mix: uncertain below {threshold:.2f}", flush=True)
    return {"uncertain_below": threshold, "per_corpus": per_corpus, "thresholds": rows,
            "mean_ua": float(np.mean([r["ua"] for r in per_corpus.values()]))}


def fitted(prober, recipe, files, layers, c, temperature):
    """(standardisation mean, std, weight, bias) of a head on ``files``, the temperature folded in."""
    linear, mean, std, _ = fit_head(prober, recipe, files, layers, c)
    return (torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32)),
            linear.weight.detach() / temperature, linear.bias.detach() / temperature)


def write_headline(weights_dir: Path, name: str, meta: dict, layer_set: str, session_layer_set: str) -> list[dict]:
    """The figures the page's "How good is this?" shows (registry ``headline``): held-out corpora,
    adapted, and the RAVDESS CV of each head's layers (``scripts/whisper_probe.py probe --layer``)."""
    from ser_model.modelcard import probe_cv

    chance = float(np.mean([1 / 7, 1 / 7, 1 / 5, 1 / 4]))  # RAVDESS, TESS, ASED, TurEV-DB classes
    rows = [{"what": "corpora and languages it never trained on (leave one corpus out, mean of 4)",
             "ua": round(meta["loco_mean_ua"], 3), "chance": round(chance, 3)}]
    if "loco_session_mean_ua" in meta:
        rows.append({"what": f"the same, after {meta['session_min_speech_s']:g} s of the speaker's speech (session head)",
                     "ua": round(meta["loco_session_mean_ua"], 3), "chance": round(chance, 3)})
    if "loco_adapted_mean_ua" in meta:
        rows.append({"what": "the same, adapted to the speaker's calm voice",
                     "ua": round(meta["loco_adapted_mean_ua"], 3), "chance": round(chance, 3)})
    for recipe, layers, what in ((meta.get("plain_cv_recipe", meta["recipe"]), layer_set,
                                  "new actors of RAVDESS, the corpus it knows best (5-fold CV)"),
                                 (meta.get("session_recipe"), session_layer_set, "the same, session head")):
        cv = probe_cv(recipe, layers) if recipe else None
        if cv:
            rows.append({"what": what, "ua": round(cv["ua"], 3), "chance": round(1 / 7, 3)})
    path = weights_dir / "registry.json"
    registry = json.loads(path.read_text())
    registry["models"][name]["headline"] = rows
    path.write_text(json.dumps(registry, indent=2) + "\n")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", nargs="+", default=["L1", "L2"], choices=list(P.LAYER_SETS))
    ap.add_argument("--session-layers", default=None, choices=list(P.LAYER_SETS),
                    help="the layers the session head reads (default: the plain head's); one encoder pass "
                         "to the deepest of them serves every head")
    ap.add_argument("--c", nargs="+", type=float, default=[0.001, 0.01, 0.1])
    ap.add_argument("--recipe", default="gainaug", choices=["base", *P.RECIPES])
    ap.add_argument("--adapted-recipe", default="enrol2+gainaug", choices=["none", *P.RECIPES],
                    help="the voice-adapted head's recipe (an enrolling one), or none")
    ap.add_argument("--session-recipe", default="sess4+gainaug", choices=["none", *P.RECIPES],
                    help="the session head's recipe (one centring on clips of any emotion), or none")
    ap.add_argument("--plain-network", default="none", choices=["none", *[k for k, r in P.RECIPES.items() if r.hidden]],
                    help="average the plain head's probabilities with this network recipe's (ModelConfig.plain_network)")
    ap.add_argument("--plain-network-layers", default="L1+L2", choices=list(P.LAYER_SETS))
    ap.add_argument("--plain-prior", default="none", choices=["none", "coverage"],
                    help="weigh the plain head's probabilities by each label's coverage, k of K training "
                         "corpora (ModelConfig.plain_prior; scripts/plain_mix_probe.py --cover)")
    ap.add_argument("--session-mix", action="store_true",
                    help="a session's answer averages the session head with the calm-voice head on a calm "
                         "reference found in the session (ModelConfig.session_mix; needs both heads)")
    ap.add_argument("--sure-accuracy", type=float, default=0.5,
                    help="labels at or above the threshold are right this often on held-out corpora")
    ap.add_argument("--exclude", nargs="*", default=[], choices=P.CORPORA, help="corpora left out of the final head")
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "whisper_head.pt")
    ap.add_argument("--no-default", action="store_true", help="do not make it the weights folder's default")
    args = ap.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads()
    t0 = time.time()
    recipe = P.BASE if args.recipe == "base" else P.RECIPES[args.recipe]
    adapted = None if args.adapted_recipe == "none" else P.RECIPES[args.adapted_recipe]
    session = None if args.session_recipe == "none" else P.RECIPES[args.session_recipe]
    if session and session.enrol_scale:
        ap.error("the app shrinks a session's spread with a fixed weight: pick a recipe with enrol_weight")
    prober = P.Prober(P.Table())
    t = prober.t

    best, grid, folds = choose(prober, recipe, args.layers, args.c)
    layer_name = best.split(" C=")[0]
    layers, c = P.LAYER_SETS[layer_name], float(best.split(" C=")[1])
    network = None if args.plain_network == "none" else P.RECIPES[args.plain_network]
    network_layers = P.LAYER_SETS[args.plain_network_layers]
    if network:  # the plain answer is the mean of both heads' probabilities: calibrated as one
        decay = network.cs[0]
        folds = with_network(folds, held_out(prober, network, network_layers, decay))
    if args.plain_prior == "coverage":  # each held-out corpus: the coverage among the other corpora
        for corpus, f in folds.items():
            f["prior"] = np.exp(P.coverage_shift(t, np.flatnonzero(t.corpus != corpus)))
    plain = calibrate(recipe, folds, args.sure_accuracy)
    if adapted:  # the same Whisper layer (one encoder pass serves both heads); its own C
        best_a, grid_a, folds_a = choose(prober, adapted, [layer_name], args.c)
        c_a = float(best_a.split(" C=")[1])
        adapt = calibrate(adapted, folds_a, args.sure_accuracy)
    session_layer_name = args.session_layers or layer_name
    session_layers = P.LAYER_SETS[session_layer_name]
    if session:  # the same again for the session head, on its own layers
        best_s, grid_s, folds_s = choose(prober, session, [session_layer_name], args.c)
        c_s = float(best_s.split(" C=")[1])
        sess = calibrate(session, folds_s, args.sure_accuracy)
    mixing = bool(args.session_mix and session and adapted)
    if mixing:
        mix = calibrate_mix(prober, {"plain": (args.recipe, layer_name, c), "calm": (args.adapted_recipe, layer_name, c_a),
                                     "session": (args.session_recipe, session_layer_name, c_s)},
                            {"session": sess["temperature"], "adapted": adapt["temperature"]}, args.sure_accuracy)
    shipping = args.out.resolve().parent == (ROOT / "weights").resolve()
    if shipping:  # a checkpoint elsewhere (a LOCO fold, a trial) leaves the shipped model's reports alone
        plot_reliability(plain["reliability"]["raw"], plain["reliability"]["calibrated"], plain["temperature"])

    train = np.flatnonzero(~np.isin(t.corpus, args.exclude))
    prior = tuple(np.exp(P.coverage_shift(t, train)).round(6).tolist()) if args.plain_prior == "coverage" else ()
    folded = not (network or prior)  # the temperature folds into the linear layer; else WhisperHead.plain applies it
    cfg = ModelConfig(arch="whisper_head", whisper_layers=layers, temperature=plain["temperature"],
                      adaptation=adapted is not None, session=session is not None,
                      session_layers=session_layers if session and session_layers != layers else (),
                      session_mix=mixing, session_spread=session.enrol_weight if session else 0.0,
                      plain_network=network.hidden if network else 0,
                      plain_network_layers=network_layers if network and network_layers != layers else (),
                      plain_prior=prior)
    model = build_model(cfg)
    W.load_pretrained(model.encoder)
    with torch.no_grad():
        for (norm, head), (mean, std, weight, bias) in [((model.norm, model.head),
                                                         fitted(prober, recipe, train, layers, c,
                                                                plain["temperature"] if folded else 1.0))] + (
                [((model.adapted_norm, model.adapted_head),
                  fitted(prober, adapted, train, layers, c_a, adapt["temperature"]))] if adapted else []) + (
                [((model.session_norm, model.session_head),
                  fitted(prober, session, train, session_layers, c_s, sess["temperature"]))] if session else []):
            norm.mean.copy_(mean)
            norm.std.copy_(std)
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        if network:  # untempered: the temperature divides the mix (WhisperHead.plain)
            net, mean, std, _ = fit_head(prober, network, train, network_layers, decay)
            model.network_norm.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            model.network_norm.std.copy_(torch.from_numpy(std.astype(np.float32)))
            first, last = net[1], net[4]  # (dropout, linear, ReLU, dropout, linear): the linear layers
            model.network[0].load_state_dict(first.state_dict())
            model.network[2].load_state_dict(last.state_dict())
        if cfg.session_spread:  # the session's variance is shrunk toward the training speakers' pooled one
            model.session_pool.copy_(torch.from_numpy(prober.fit_pool(session, train, session_layers)))
    counts = {k: int(np.sum(t.corpus[train] == k)) for k in P.CORPORA if k not in args.exclude}
    command = "python scripts/ship_whisper_head.py " + " ".join(sys.argv[1:])
    meta = {"name": args.out.stem, "trained_on": counts, "recipe": args.recipe, "train_variants": recipe.train_variants,
            "whisper_layers": list(layers), "c": c, "grid_mean_loco_ua": grid, "temperature": plain["temperature"],
            "uncertain_below": plain["uncertain_below"], "sure_accuracy_target": args.sure_accuracy,
            "loco": plain["per_corpus"], "loco_mean_ua": plain["mean_ua"], "command": command}
    if network:  # its RAVDESS CV is scripts/plain_mix_probe.py's run of the same mix
        meta.update(plain_network=args.plain_network, plain_network_layers=list(network_layers),
                    plain_network_decay=decay, plain_cv_recipe="plain-mix" + ("+cover" if prior else ""))
    if prior:
        meta.update(plain_prior="coverage", plain_prior_weights=dict(zip(EMOTIONS, prior)))
    if adapted:
        meta.update(adapted_recipe=args.adapted_recipe, adapted_c=c_a, adapted_grid_mean_loco_ua=grid_a,
                    temperature_adapted=adapt["temperature"], uncertain_below_adapted=adapt["uncertain_below"],
                    loco_adapted=adapt["per_corpus"], loco_adapted_mean_ua=adapt["mean_ua"])
    if session:
        from ser_model.inference import SESSION_MIN_SPEECH_S

        meta.update(session_recipe=args.session_recipe, session_draws=session.session_draws,
                    session_sizes=sorted(set(session.session_sizes or (session.enrol,))),
                    session_layers=list(session_layers), session_c=c_s, session_grid_mean_loco_ua=grid_s,
                    temperature_session=sess["temperature"], uncertain_below_session=sess["uncertain_below"],
                    loco_session=sess["per_corpus"], loco_session_mean_ua=sess["mean_ua"],
                    session_min_speech_s=SESSION_MIN_SPEECH_S)
    if mixing:  # what a session's answers are: the mix (the session head alone stays on record)
        meta.update(session_head_alone={"loco": meta["loco_session"], "loco_mean_ua": meta["loco_session_mean_ua"],
                                        "uncertain_below": meta["uncertain_below_session"]},
                    loco_session=mix["per_corpus"], loco_session_mean_ua=mix["mean_ua"],
                    uncertain_below_session=mix["uncertain_below"], session_mix=True)
    from ser_model.modelcard import probe_cv

    for key, name, layer_set in (("ravdess_cv", meta.get("plain_cv_recipe", args.recipe), layer_name),
                                 ("ravdess_cv_adapted", args.adapted_recipe, layer_name),
                                 ("ravdess_cv_session", args.session_recipe, session_layer_name)):
        cv = probe_cv(name, layer_set) if name != "none" else None  # the probe's RAVDESS CV, these layers
        if cv:
            meta[key] = cv
    path = save_checkpoint(args.out, model.eval(), cfg, meta)
    if shipping:
        register(ROOT / "weights", args.out.stem, path, default=not args.no_default)
        write_headline(ROOT / "weights", args.out.stem, meta, layer_name, session_layer_name)
    if shipping and not args.exclude:
        REPORT.write_text(json.dumps({"command": command, "chosen": best, "grid_mean_loco_ua": grid,
                                      "plain": plain, "adapted": adapt if adapted else None,
                                      "session": sess if session else None,
                                      "session_mix": mix if mixing else None,
                                      "seconds": time.time() - t0}, indent=1, default=float) + "\n")
        print(f"report: {REPORT}, plot: {PLOT}")
    print(f"checkpoint: {path} ({path.stat().st_size / 1e6:.1f} MB), {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
