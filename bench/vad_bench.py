"""The streaming VAD's CPU cost per stream, and what batching it across streams would save.

    python bench/vad_bench.py [--seconds 20] [--batches 1,4,8,16,32,64]

Times, on one thread: ``StreamingVAD.push`` as a stream alone runs it (250 ms frames),
``advance`` over B streams' 250 ms frames as the server's VAD batcher runs it (the network in
PyTorch, every chunk of every stream in one pass: ``ser_model.silero``), and for comparison the
wheel's ONNX model as the batcher called it until 2026-12-02: one call for the next chunk of B
streams at once (the recurrent state of each stream in its own row), at 16 kHz and at 8 kHz
(256-sample chunks, the same 32 ms; not used: measured as an option). Prints ms per chunk and ms
of CPU per stream-second (31.25 chunks), and writes ``bench/results/vad_bench_<time>.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, save_results  # noqa: E402

sys.path.insert(0, str(ROOT))
from ser_model.audio import SAMPLE_RATE  # noqa: E402
from ser_model.streaming import VAD_CHUNK, VAD_CONTEXT, StreamingVAD, StreamSession, advance  # noqa: E402

FRAME = SAMPLE_RATE // 4  # the page's 250 ms frames
CHUNKS_PER_S = SAMPLE_RATE / VAD_CHUNK


def per_chunk_ms(fn, chunks: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of ``fn()``'s time divided by the ``chunks`` it judges, in ms."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000 / chunks)
    return statistics.median(times)


def onnx_session():
    """The wheel's ONNX model on one thread."""
    from importlib import resources

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
    path = resources.files("silero_vad.data").joinpath("silero_vad.onnx")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="audio per measurement")
    ap.add_argument("--batches", default="1,4,8,16,32,64", help="streams judged per ONNX call")
    args = ap.parse_args()
    from ser_model.data import limit_blas_threads

    limit_blas_threads()
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(args.seconds * SAMPLE_RATE))).astype(np.float32)
    chunks = len(audio) // VAD_CHUNK
    session = onnx_session()

    def stream():
        vad = StreamingVAD()
        for i in range(0, len(audio), FRAME):
            vad.push(audio[i:i + FRAME])

    rows = {"stream (StreamingVAD.push, 250 ms frames)": per_chunk_ms(stream, chunks)}
    pcm = (audio * 32767).astype("<i2").tobytes()

    def batcher(b: int):
        def run():
            sessions = [StreamSession(SAMPLE_RATE) for _ in range(b)]
            for i in range(0, len(pcm), 2 * FRAME):
                for s in sessions:
                    s.receive(pcm[i:i + 2 * FRAME])
                advance(sessions)
        return run

    for b in (int(v) for v in args.batches.split(",")):
        rows[f"advance, {b} stream{'s' if b > 1 else ''}, 250 ms frames"] = per_chunk_ms(batcher(b), b * chunks, 3)

    def batched(b: int, rate: int):
        chunk, context = VAD_CHUNK * rate // SAMPLE_RATE, VAD_CONTEXT * rate // SAMPLE_RATE
        state = np.zeros((2, b, 128), dtype=np.float32)
        x = np.zeros((b, chunk + context), dtype=np.float32)
        steps, rate_arg = max(1, chunks // b), np.array(rate, dtype=np.int64)

        def run():
            nonlocal state
            for k in range(steps):
                x[:, context:] = audio[k * chunk:(k + 1) * chunk]
                _, state = session.run(None, {"input": x, "state": state, "sr": rate_arg})
        return run, steps * b

    for rate in (SAMPLE_RATE, 8000):
        for b in (int(v) for v in args.batches.split(",")):
            run, judged = batched(b, rate)
            rows[f"ONNX call, {b} stream{'s' if b > 1 else ''} per call, {rate // 1000} kHz"] = per_chunk_ms(run, judged)
    print(f"{'':48s} {'ms per chunk':>12s} {'ms CPU per stream-s':>20s}")
    for name, ms in rows.items():
        print(f"{name:48s} {ms:12.4f} {ms * CHUNKS_PER_S:20.2f}")
    save_results(ROOT / "bench" / "results", "vad_bench", {
        "command": "python bench/vad_bench.py " + " ".join(sys.argv[1:]),
        "ms_per_chunk": rows, "chunks_per_stream_second": CHUNKS_PER_S})


if __name__ == "__main__":
    main()
