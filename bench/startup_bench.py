"""A new user's first wait: a cold `predict`, and the server from launch to its first live label.

    python bench/startup_bench.py [--runs 3] [--weights weights/]

Rows, each the median of ``--runs`` fresh processes (the OS file cache warm, as on a second try):

- ``import torch`` alone: the floor any PyTorch command pays on this machine;
- ``python -m ser_model predict FILE``: a 3 s file, from launch to exit (target: at most 2x the floor);
- ``run.py`` launch -> ``/readyz`` ready (model loaded, TorchScript made, every path warmed);
- launch -> first ``emotion`` event with a label, for a client that connects as soon as the port
  answers and streams speech in real time; and from that client's first audio frame to that
  label (the label needs 0.5 s of audio: the first hop; target about 1 s).

Writes ``bench/results/startup_bench_<time>.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import DEFAULT_AUDIO, ROOT, LiveClient, free_port, load_speech, save_results  # noqa: E402


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t


def server_start(weights: Path, pcm) -> tuple[float, float, float]:
    """(launch -> /readyz 200, launch -> first labelled emotion event, the client's first audio
    frame -> that event) in seconds."""
    import requests

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "run.py", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "SER_WEIGHTS": str(weights)})
    try:
        ready = None
        client = None
        while time.monotonic() - t0 < 180:
            try:
                r = requests.get(f"{url}/readyz", timeout=2)
                if client is None:  # the port answers: a user opens the page and presses Record
                    client = LiveClient(url, pcm)
                    client.start()
                if r.status_code == 200 and ready is None:
                    ready = time.monotonic() - t0
            except requests.RequestException:
                pass
            labelled = [at for at, e in (client.events if client else []) if e.get("label")]
            if ready is not None and labelled:
                return ready, labelled[0] - t0, labelled[0] - client.sent_at[0]
            time.sleep(0.05)
        raise SystemExit("the server gave no label within 180 s")
    finally:
        if client:
            client.finish()
        proc.terminate()
        proc.wait(15)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--weights", type=Path, default=ROOT / "weights")
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    pcm = load_speech(args.audio_dir, 6.0, 1, 16000)[0]  # int16
    rows: dict[str, list[float]] = {"import torch": [], "predict (3 s file)": [],
                                    "server: launch -> ready": [], "server: launch -> first label": [],
                                    "first audio frame -> first label": []}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.wav"
        sf.write(clip, pcm[:48000], 16000)
        for run in range(args.runs):
            rows["import torch"].append(wall([sys.executable, "-c", "import torch"]))
            rows["predict (3 s file)"].append(wall([sys.executable, "-m", "ser_model", "predict", str(clip),
                                                    "--weights", str(args.weights)]))
            ready, label, after_audio = server_start(args.weights, pcm)
            rows["server: launch -> ready"].append(ready)
            rows["server: launch -> first label"].append(label)
            rows["first audio frame -> first label"].append(after_audio)
            print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    ratio = med["predict (3 s file)"] / med["import torch"]
    print(f"\n| step | median s (of {args.runs}) |\n|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} |")
    print(f"| predict / import torch | {ratio:.2f}x (target <= 2) |")
    save_results(args.out, "startup_bench", {"runs": rows, "median_s": med, "predict_over_import_torch": ratio,
                                             "weights": str(args.weights), "command": " ".join(["python", *sys.argv])})


if __name__ == "__main__":
    main()
