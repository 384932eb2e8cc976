"""Collection indexing: throughput against a plain batched forward pass, and peak memory as the collection grows.

Targets (EfficientNet-Lite0, CPU):

1. throughput: the streaming pass of ``build_index`` (decode, preprocess, forward with
   the layers captured, per-channel top-k on the device, pooled features, checkpoints)
   keeps >= 0.8 of the throughput of a plain batched forward pass over the same
   collection with the same model, batch size and DataLoader (same ``_Images`` dataset,
   same workers). The summary shows it as time(index streaming) / time(plain) <= 1.25.
   The one-off receptive-field post-pass (``winner_boxes``: analytic or gradient boxes for
   every winner) is timed on its own, and the end-to-end time is reported too.
2. end to end: ``build_index`` with its receptive-field post-pass, from a fresh output
   folder each time, against the plain batched forward over the same collection, at 150
   and 600 images (150 with ``--quick``): throughput ratio >= 0.85. Arms interleaved
   (plain, index, index, plain, ...), medians.
3. memory: peak RSS of indexing 10 N images over indexing N images, each in a fresh
   subprocess with ``workers=0`` (one process holds everything); the 10 N collection
   lists the same N files ten times through symlinks. Target <= 1.10, for the whole
   build and for the streaming pass alone (peak before the post-pass). The peak is the
   child's ``VmHWM`` (``/proc/self/status``): ``ru_maxrss`` would do on a fresh process,
   but Linux carries it across ``execve``, so a child of this (big) process would start
   at the parent's peak. ``ru_maxrss`` is the fallback where there is no ``/proc``.

Run alone: ``python benchmarks/bench_indexing.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    ROOT,
    AtLeast,
    Result,
    load_cached_model,
    parse_args,
    print_header,
    print_table,
    setup_threads,
)

BENCH = "indexing"
TARGET_TIME_RATIO = 1.25  # time(index) / time(plain) <= 1.25  <=>  throughput ratio >= 0.8
TARGET_MEMORY_RATIO = 1.10
LAYERS = ("conv_stem", "conv_head")  # 32 x 112 x 112 (analytic boxes) and 1280 x 7 x 7 (gradient boxes)
K = 9
BATCH = 32
E2E_SIZES = (150, 600)
TARGET_E2E = 0.85  # throughput(index end to end) / throughput(plain forward)


def _write_jpegs(folder: Path, n: int, sizes: tuple[int, int], seed: int = 0) -> list[Path]:
    """``n`` JPEG photos-alike (smooth colour blobs plus grain) of varying sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = (int(v) for v in rng.integers(sizes[0], sizes[1], 2))
        small = rng.integers(0, 256, (max(2, h // 24), max(2, w // 24), 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
        pixels = np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / ("ab"[i % 2]) / f"img{i:04d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def _default_workers() -> int:
    """What ``build_index(workers=None)`` uses: cores - 1, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


# --- 1. throughput -----------------------------------------------------------------------


def _plain_pass(loaded, collection, workers: int) -> float:
    """The baseline: the same DataLoader and batches, ``model(x)`` and nothing else."""
    import torch

    from vizapp.collection.indexing import _Images

    loader = torch.utils.data.DataLoader(
        _Images(collection, loaded.preprocess, list(range(len(collection)))), batch_size=BATCH, shuffle=False,
        num_workers=workers, pin_memory=False, persistent_workers=False,
    )
    model = loaded.module.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for batch, _ids, _w, _h, ok in loader:
            model(batch[ok.nonzero().flatten()])
    return time.perf_counter() - t0


class _BoxesTimer:
    """Wraps ``winner_boxes`` where ``build_index`` looks it up: times the real one, or stands in for it with zeros."""

    def __init__(self) -> None:
        import vizapp.collection.indexing as indexing

        self.indexing = indexing
        self.real = indexing.winner_boxes
        self.stub = False
        self.seconds = 0.0

    def __call__(self, loaded, layers, meta, tops, sizes, cancel=None):
        import numpy as np

        t0 = time.perf_counter()
        if self.stub:
            out = {layer: np.zeros((*tops[layer].images.shape, 4), np.int64) for layer in layers}
        else:
            out = self.real(loaded, layers, meta, tops, sizes, cancel)
        self.seconds = time.perf_counter() - t0
        return out

    def __enter__(self):
        self.indexing.winner_boxes = self
        return self

    def __exit__(self, *exc) -> None:
        self.indexing.winner_boxes = self.real


def _index_pass(loaded, collection, workers: int, out: Path, timer: _BoxesTimer) -> tuple[float, float]:
    """(streaming seconds, post-pass seconds) of one fresh ``build_index``."""
    from vizapp.collection.indexing import build_index

    t0 = time.perf_counter()
    index = build_index(loaded, collection, list(LAYERS), k=K, out=out, batch_size=BATCH, workers=workers)
    total = time.perf_counter() - t0
    assert index.done and len(index.skipped) == 0
    return total - timer.seconds, timer.seconds


def _throughput(quick: bool, work: Path) -> tuple[list[Result], dict]:
    from vizapp.collection.datasets import ImageCollection

    n = 64 if quick else 256
    pairs = 1 if quick else 2
    _write_jpegs(work / "photos", n, (160, 720), seed=1)
    _write_jpegs(work / "warm", BATCH + 8, (160, 720), seed=2)  # a full and a partial batch
    collection = ImageCollection.from_folder(work / "photos")
    warm = ImageCollection.from_folder(work / "warm")
    loaded = load_cached_model("efficientnet_lite0")
    workers = _default_workers()
    print(f"collection: {n} JPEGs, 160-720 px sides; batch {BATCH}, DataLoader workers {workers} "
          f"(the app's default), layers {', '.join(LAYERS)}, k = {K}")

    plain: list[float] = []
    stream: list[float] = []
    with _BoxesTimer() as timer:
        # Warm-up: oneDNN primitives for both batch shapes, the worker start-up path.
        _plain_pass(loaded, warm, workers)
        timer.stub = True
        if not quick:
            _index_pass(loaded, warm, workers, work / "index-warm", timer)
        # The first index run is end to end, with the real post-pass; the others stub it out.
        timer.stub = False
        t0 = time.perf_counter()
        first_stream, post = _index_pass(loaded, collection, workers, work / "index-0", timer)
        end_to_end = time.perf_counter() - t0
        timer.stub = True
        stream.append(first_stream)
        plain.append(_plain_pass(loaded, collection, workers))
        for i in range(1, pairs * 2):  # A B B A ... so drift hits both arms alike
            if i % 2:
                plain.append(_plain_pass(loaded, collection, workers))
                stream.append(_index_pass(loaded, collection, workers, work / f"index-{i}", timer)[0])
            else:
                stream.append(_index_pass(loaded, collection, workers, work / f"index-{i}", timer)[0])
                plain.append(_plain_pass(loaded, collection, workers))
    best_plain, best_stream = min(plain), min(stream)
    ratio = best_stream / best_plain
    print(f"\n{'arm':<34} {'runs (s)':<28} {'best':>8} {'images/s':>9}")
    print(f"{'plain batched forward':<34} {', '.join(f'{t:.2f}' for t in plain):<28} {best_plain:>7.2f}s "
          f"{n / best_plain:>9.1f}")
    print(f"{'index, streaming pass':<34} {', '.join(f'{t:.2f}' for t in stream):<28} {best_stream:>7.2f}s "
          f"{n / best_stream:>9.1f}")
    print(f"throughput ratio (index / plain): {best_plain / best_stream:.3f} (target >= 0.8); "
          f"time ratio {ratio:.3f} (target <= {TARGET_TIME_RATIO})")
    print(f"receptive-field post-pass (winner_boxes, once per index): {post:.2f} s; end to end (first run): "
          f"{end_to_end:.2f} s = {n / end_to_end:.1f} images/s")
    results = [
        Result(BENCH, f"index / plain forward time, {n} images", ratio, "x", TARGET_TIME_RATIO,
               note=f"throughput ratio {best_plain / best_stream:.3f} (target >= 0.8): "
                    f"{n / best_stream:.1f} vs {n / best_plain:.1f} images/s, best of {len(plain)}"),
        Result(BENCH, "index throughput (streaming)", n / best_stream, "img/s"),
        Result(BENCH, "plain forward throughput", n / best_plain, "img/s"),
        Result(BENCH, "receptive-field post-pass (once)", post * 1000.0, "ms"),
        Result(BENCH, f"index end to end, {n} images", end_to_end * 1000.0, "ms"),
    ]
    return results, {"n": n, "plain": plain, "stream": stream, "post": post, "end_to_end": end_to_end}


# --- 2. end to end --------------------------------------------------------------------------


def _full_index(loaded, collection, workers: int, out: Path, timer: _BoxesTimer) -> tuple[float, float]:
    """(end-to-end seconds, post-pass seconds) of one fresh ``build_index`` with the real post-pass."""
    from vizapp.collection.indexing import build_index

    timer.stub = False
    t0 = time.perf_counter()
    index = build_index(loaded, collection, list(LAYERS), k=K, out=out, batch_size=BATCH, workers=workers)
    total = time.perf_counter() - t0
    assert index.done and len(index.skipped) == 0
    return total, timer.seconds


def _end_to_end_runs(loaded, collection, workers: int, out: Path, rounds: int, extra_arms: dict):
    """``{arm: [seconds]}`` and ``{index arm: [post-pass seconds]}``, the arms interleaved."""
    import contextlib

    contexts = {"index end to end": contextlib.nullcontext, **extra_arms}
    times: dict[str, list[float]] = {"plain batched forward": [], **{name: [] for name in contexts}}
    posts: dict[str, list[float]] = {name: [] for name in contexts}
    runs = 0

    def index_arm(name: str) -> None:
        nonlocal runs
        runs += 1
        with contexts[name](), _BoxesTimer() as timer:  # the timer wraps whichever winner_boxes the arm uses
            total, post = _full_index(loaded, collection, workers, out / f"run-{runs}", timer)
        times[name].append(total)
        posts[name].append(post)

    def plain_arm() -> None:
        times["plain batched forward"].append(_plain_pass(loaded, collection, workers))

    arms = [plain_arm] + [lambda name=name: index_arm(name) for name in contexts]
    _plain_pass(loaded, collection, workers)  # warm-up: page cache, oneDNN primitives
    for r in range(rounds):
        for arm in arms if r % 2 == 0 else arms[::-1]:
            arm()
    return times, posts


def _end_to_end(quick: bool, work: Path, extra_arms: dict | None = None) -> tuple[list[Result], dict]:
    """Index end to end (with the post-pass) against the plain forward, interleaved, medians.

    ``extra_arms`` (``{name: context manager factory}``) adds arms that index inside the given
    context (an older post-pass, for instance); they are printed, not targeted.
    """
    import statistics

    from vizapp.collection.datasets import ImageCollection

    loaded = load_cached_model("efficientnet_lite0")
    workers = _default_workers()
    sizes = E2E_SIZES[:1] if quick else E2E_SIZES
    rounds = 2 if quick else 4  # the arms alternate: P I, I P, P I, I P
    results: list[Result] = []
    figures: dict = {}
    print(f"\nend to end: build_index with the receptive-field post-pass (fresh folder each run) vs the "
          f"plain forward; {rounds} runs per arm, interleaved, medians")
    print(f"{'images':>7} {'arm':<30} {'runs (s)':<36} {'median':>8} {'post-pass':>10} {'vs plain':>9}")
    for n in sizes:
        folder = work / f"e2e-{n}"
        _write_jpegs(folder, n, (160, 720), seed=4)
        collection = ImageCollection.from_folder(folder)
        times, posts = _end_to_end_runs(loaded, collection, workers, work / f"e2e-{n}-out", rounds, extra_arms or {})
        plain = statistics.median(times["plain batched forward"])
        for name, runs in times.items():
            med = statistics.median(runs)
            post = f"{statistics.median(posts[name]):>9.2f}s" if name in posts else f"{'-':>10}"
            print(f"{n:>7} {name:<30} {', '.join(f'{t:.2f}' for t in runs):<36} {med:>7.2f}s {post} "
                  f"{plain / med:>8.3f}")
        med = statistics.median(times["index end to end"])
        post = statistics.median(posts["index end to end"])
        results.append(AtLeast(BENCH, f"index end to end / plain forward throughput, {n} images", plain / med, "x",
                               TARGET_E2E, note=f"{n / med:.1f} vs {n / plain:.1f} images/s; post-pass {post:.2f} s"))
        figures[n] = {"times": times, "posts": posts}
        sys.stdout.flush()
    return results, figures


# --- 3. peak memory ------------------------------------------------------------------------

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
import vizapp.collection.indexing as indexing
from models import load_model
from vizapp.collection.datasets import ImageCollection

def rss():
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmRSS:")))
def peak():
    # KiB. Linux keeps ru_maxrss across execve (a child spawned by a big parent starts at the
    # parent's peak), so read this process's own high-water mark, VmHWM, where there is one.
    try:
        with open("/proc/self/status") as f:
            return int(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loaded = load_model("efficientnet_lite0")
collection = ImageCollection.from_folder({folder!r})
before = peak()
real = indexing.winner_boxes
marks = {{}}
after_batch = []
def progress(done, total, text):
    if total and done:
        try:
            after_batch.append(rss())
        except (OSError, StopIteration):
            after_batch.append(peak())
def boxes(*args):
    marks["stream"] = peak()
    return real(*args)
indexing.winner_boxes = boxes
t0 = time.perf_counter()
index = indexing.build_index(loaded, collection, {layers!r}, k={k}, out={out!r}, batch_size={batch}, workers=0,
                             progress=progress)
assert index.done and len(index.paths) == len(collection)
print(json.dumps({{"images": len(collection), "before": before, "stream": marks["stream"], "end": peak(),
                  "rss": after_batch, "seconds": time.perf_counter() - t0}}))
"""


def _child_peak(folder: Path, out: Path, threads: int, batch: int) -> dict:
    code = _CHILD.format(root=str(ROOT), threads=threads, folder=str(folder), layers=list(LAYERS), k=K,
                         out=str(out), batch=batch)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"indexing subprocess failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _memory(quick: bool, work: Path, threads: int) -> tuple[list[Result], dict]:
    # N is a multiple of the batch size: a last, smaller batch would make the small run's
    # peak (activations of one batch) smaller for a reason that has nothing to do with N.
    n, batch = (8, 4) if quick else (64, BATCH)
    repeats = 1 if quick else 2  # the peak wanders by a few % between identical runs (allocator)
    files = _write_jpegs(work / "few", n, (96, 320), seed=3)
    many = work / "many"
    many.mkdir()
    for r in range(10):
        for f in files:
            (many / f"{r:02d}_{f.parent.name}_{f.name}").symlink_to(f)
    print(f"\nN = {n} JPEGs (96-320 px) and 10 N = {10 * n} (the same files, ten symlinks each); "
          f"workers=0, batch {batch}, layers {', '.join(LAYERS)}, k = {K}, one fresh process per run, "
          f"{repeats} run(s) each (N, 10 N, N, ...), the lowest peak of each compared")
    runs: dict[int, list[dict]] = {n: [], 10 * n: []}
    for i in range(repeats):
        runs[n].append(_child_peak(work / "few", work / f"mem-few-{i}", threads, batch))
        runs[10 * n].append(_child_peak(many, work / f"mem-many-{i}", threads, batch))
    print(f"\n{'images':>7} {'after load':>11} {'stream peak':>12} {'build peak':>11} "
          f"{'RSS after batch 1 / last':>25} {'time':>8}")
    for r in runs[n] + runs[10 * n]:
        print(f"{r['images']:>7} {r['before'] / 1024:>8.0f} MB {r['stream'] / 1024:>9.0f} MB "
              f"{r['end'] / 1024:>8.0f} MB {r['rss'][0] / 1024:>13.0f} / {r['rss'][-1] / 1024:.0f} MB "
              f"{r['seconds']:>7.1f}s")
    small = {key: min(r[key] for r in runs[n]) for key in ("before", "stream", "end")}
    large = {key: min(r[key] for r in runs[10 * n]) for key in ("before", "stream", "end")}
    end_ratio = large["end"] / small["end"]
    stream_ratio = large["stream"] / small["stream"]
    print(f"peak RSS ratio 10N / N: build {end_ratio:.3f}, streaming pass {stream_ratio:.3f} "
          f"(target <= {TARGET_MEMORY_RATIO})")
    results = [
        Result(BENCH, f"peak RSS {10 * n} / {n} images (build)", end_ratio, "x", TARGET_MEMORY_RATIO,
               note=f"peak RSS {small['end'] / 1024:.0f} MB for {n} images, {large['end'] / 1024:.0f} MB "
                    f"for {10 * n}; {small['before'] / 1024:.0f} MB after loading the model"),
        Result(BENCH, f"peak RSS {10 * n} / {n} images (streaming)", stream_ratio, "x", TARGET_MEMORY_RATIO),
        Result(BENCH, f"peak RSS, {10 * n} images", large["end"] / 1024, "MB"),
    ]
    return results, {"small": runs[n], "large": runs[10 * n]}


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    print_header("Indexing: streaming top-k throughput vs plain forward; peak memory vs collection size", quick,
                 threads)
    work = Path(tempfile.mkdtemp(prefix="vizapp-bench-index-"))
    try:
        results, _ = _throughput(quick, work)
        end_to_end, _ = _end_to_end(quick, work)
        memory, _ = _memory(quick, work, threads)
        return results + end_to_end + memory
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads), "Indexing summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
