"""Attributions: time per method, Integrated Gradients' memory, and our Grad-CAM against pytorch-grad-cam.

Targets (CPU, 224 px, chelsea):

1. time per method: ``vizapp.explain.attribution.attribute(loaded, image, method)`` for every key of
   ``METHODS`` (the predicted class), EfficientNet-Lite0 and torchvision ViT-B/16 (random
   weights, classifier head re-drawn from N(0, 0.02): torchvision initialises it to zeros,
   which would make every gradient zero). Information only: a method x model table in
   seconds, wall time of the whole call (preprocessing, the forward pass that picks the
   class, the method). A first call is the warm-up; methods whose first call is short are
   timed again (3 runs, 1 with ``--quick``) and the median shown, slow ones show that first
   call. ViT-B/16's Integrated Gradients is timed once, in its memory child (2., a fresh
   process after a warm-up forward), not a second time. ``--quick`` skips ViT-B/16's slow
   methods (Integrated Gradients, SmoothGrad, Occlusion: 50 to 200 ViT-B passes each).
2. memory: Integrated Gradients with 50 steps (evaluated 8 at a time, the engine's
   default) adds at most 2 GB (10^9 bytes) to the process's resident memory, ViT-B/16 and
   Lite0. Each measurement runs in a fresh ``python -c`` process, so nothing allocated
   earlier can hide the peak. Baseline: ``VmRSS`` after loading the model and one plain
   forward pass. Peak: the kernel's high-water mark ``VmHWM`` (``/proc/self/status``) after
   resetting it at the baseline by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0),
   so it covers exactly the ``attribute`` call and misses nothing, however short.
   ``ru_maxrss`` is not used: it cannot be reset, so it would also count the model loading
   (and Linux carries it over from the forked parent). A thread sampling ``VmRSS`` every
   millisecond is printed as a cross-check (it can only under-read), and is the
   measurement if the reset is refused. The naive, un-batched IG (all 50 steps in one
   batch) is measured the same way to show why batching matters, unless its predicted
   increase is over 8 GB or over the memory available (8-step increase x 50 / 8; if that
   is over 8 GB, a line through a 2-step batch's increase and the 8-step one).
   ``--quick``: ViT-B/16 with 16 steps (two full batches of 8: the same peak, batches are
   evaluated one after the other) and no naive ViT-B run.
3. Grad-CAM against pytorch-grad-cam (``pip install grad-cam``, the ``bench`` extra): the
   same model, layer, class and input: EfficientNet-Lite0 at ``default_cam_layer`` and a
   seeded random ResNet-18 at ``layer4``. pytorch-grad-cam returns a 224 x 224 map:
   min-max normalised at the layer's grid, resized with ``cv2.resize`` (bilinear), min-max
   normalised again. Our ``attribute(..., "gradcam").raw`` (the map at the layer's grid) is
   put through that very post-processing (pytorch-grad-cam's own ``scale_cam_image``), so
   the comparison is of the CAMs, not of two resizers; Pearson r at 224 px, target >= 0.99.
   Our display map (``.map``: torch bilinear upsampling, scaled by its maximum) is compared
   too, for information. Time: ours / theirs, interleaved, medians, both image -> map for
   the predicted class (theirs: preprocess + ``GradCAM(...)(x, targets=None)``).

Run alone: ``python benchmarks/bench_attribution.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    ROOT,
    AtLeast,
    Result,
    interleaved,
    load_cached_model,
    parse_args,
    print_header,
    print_table,
    setup_threads,
)
from bench_attention import as_loaded, chelsea, vit_b16_random

BENCH = "attribution"
IG_MEMORY_TARGET_GB = 2.0
NAIVE_LIMIT_GB = 8.0
CORRELATION_TARGET = 0.99
SLOW_VIT_METHODS = ("integrated_gradients", "smoothgrad", "occlusion")
GB = 1e9


@dataclass
class Correlation(AtLeast):
    """A lower-bound row shown with ``digits`` decimals (a correlation)."""

    digits: int = 4

    def value_text(self) -> str:
        return "-" if self.error else f"{self.value:.{self.digits}f}"

    def target_text(self) -> str:
        return "-" if self.target is None else f">= {self.target}"


def load_case(name: str):
    """The models of this benchmark by name (also used by the memory subprocesses)."""
    if name == "efficientnet_lite0":
        return load_cached_model(name)
    if name == "vit_b_16":
        return as_loaded(vit_b16_random(), "vit_b_16", "ViT-B/16 (random weights)")
    if name == "resnet18":
        return _seeded_resnet18()
    raise ValueError(name)


def _seeded_resnet18(seed: int = 1234):
    """ResNet-18, random weights and random batch-norm statistics (as tests/conftest.py builds it)."""
    import torch
    import torchvision

    from models import LoadedModel, Preprocess, imagenet_classes

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return LoadedModel("resnet18", "ResNet-18 (seeded random)", "cnn", model.eval(), Preprocess(),
                       imagenet_classes(), "weights=None", trained=False)


# --- 1. time per method ------------------------------------------------------------------


def _time_methods(cases, image, quick: bool, reuse: dict[tuple[str, str], float]) -> tuple[dict, dict]:
    """``{method: {model: (median s, runs) or "skipped"}}``; ``reuse`` holds times already taken elsewhere."""
    from vizapp.explain.attribution import METHODS, attribute

    repeat_below, repeats = (1.0, 1) if quick else (5.0, 3)
    table: dict[str, dict[str, tuple[float, int] | str]] = {m: {} for m in METHODS}
    info: dict[str, str] = {}
    for short, loaded in cases:
        attribute(loaded, image, "saliency")  # warm-up: first forward/backward of the process
        for method in METHODS:
            if quick and short == "vit_b_16" and method in SLOW_VIT_METHODS:
                table[method][short] = "skipped"
                continue
            if (short, method) in reuse:
                table[method][short] = (reuse[short, method], 1)
                print(f"  {short:<19} {method:<21} {reuse[short, method]:8.3f} s  (1 run, in the memory child)")
                continue
            t0 = time.perf_counter()
            a = attribute(loaded, image, method)
            first = time.perf_counter() - t0
            times = [first]
            if first < repeat_below:
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    attribute(loaded, image, method)
                    times.append(time.perf_counter() - t0)
            table[method][short] = (statistics.median(times), len(times))
            info[short] = f"class {a.target} ({a.target_label})"
            print(f"  {short:<19} {method:<21} {statistics.median(times):8.3f} s  ({len(times)} run(s))")
            sys.stdout.flush()
    return table, info


# --- 2. Integrated Gradients' memory --------------------------------------------------------

_CHILD = r"""
import gc, json, resource, sys, threading, time
sys.path.insert(0, {bench!r})
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from bench_attention import chelsea
from bench_attribution import load_case
from vizapp.explain.attribution import attribute

def status(key):
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith(key + ":")))  # KiB

loaded = load_case({model!r})
image = chelsea()
x = loaded.preprocess.batch(image)
with torch.inference_mode():
    loaded.module(x)
del x
gc.collect()
load_peak = status("VmHWM")
baseline = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    reset = status("VmHWM") <= baseline + 1024
except OSError:
    reset = False

sampled = [baseline]
done = threading.Event()
def sample():
    while not done.is_set():
        sampled[0] = max(sampled[0], status("VmRSS"))
        time.sleep(0.001)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
t0 = time.perf_counter()
a = attribute(loaded, image, "integrated_gradients", steps={steps}, internal_batch_size={batch})
seconds = time.perf_counter() - t0
done.set()
sampler.join()
print(json.dumps({{"baseline": baseline, "hwm": status("VmHWM"), "sampled": sampled[0], "reset": reset,
                  "load_peak": load_peak, "after": status("VmRSS"), "seconds": seconds,
                  "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "nonzero": bool(float(abs(a.raw).sum()) > 0)}}))
"""


def _ig_child(model: str, steps: int, batch: int, threads: int) -> dict:
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent), root=str(ROOT), threads=threads,
                         model=model, steps=steps, batch=batch)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"IG memory subprocess ({model}, {steps} steps, batch {batch}) failed:\n"
                           f"{proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    # VmHWM misses nothing the process freed (the kernel updates it before unmapping), but file
    # pages dropped by reclaim lower RSS without it: take the larger (they differ by KiB).
    peak = max(r["hwm"], r["sampled"]) if r["reset"] else r["sampled"]
    r["extra_gb"] = (peak - r["baseline"]) * 1024 / GB
    r["sampled_gb"] = (r["sampled"] - r["baseline"]) * 1024 / GB
    return r


def _available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            return int(next(line.split()[1] for line in f if line.startswith("MemAvailable:"))) * 1024 / GB
    except (OSError, StopIteration):
        return float("inf")


def _predict_naive(model: str, extra_8: float, steps: int, threads: int, quick: bool) -> tuple[float, str]:
    """The increase to expect with all ``steps`` in one batch, from the 8-step batch's increase.

    Proportional first (an over-estimate: part of the increase does not grow with the
    batch); if that is over the limit, a straight line through a 2-step batch and the
    8-step batch (one more small child process).
    """
    simple = extra_8 * steps / 8
    if simple <= NAIVE_LIMIT_GB or quick:
        return simple, "8-step increase x " + f"{steps}/8"
    extra_2 = _ig_child(model, 2, 2, threads)["extra_gb"]
    per_step = (extra_8 - extra_2) / 6
    return extra_8 + (steps - 8) * per_step, f"line through +{extra_2:.2f} GB at batch 2 and +{extra_8:.2f} GB at 8"


def _memory(quick: bool, threads: int) -> tuple[list[Result], dict[tuple[str, str], float]]:
    """The rows, and ``{(model, "integrated_gradients"): seconds}`` of the 50-step, batch-8 runs."""
    print("\nIntegrated Gradients, peak resident memory over the baseline (model loaded + one plain forward), "
          "each run in a fresh process;\npeak = VmHWM reset at the baseline through /proc/self/clear_refs "
          "(exact); 'sampled' = VmRSS read every 1 ms (cross-check, under-reads short peaks)")
    print(f"\n{'model':<19} {'steps':>5} {'batch':>5} {'baseline':>9} {'peak +':>9} {'sampled +':>9} "
          f"{'after':>8} {'time':>7} {'load peak':>9} {'ru_maxrss':>9}  peak from")
    results: list[Result] = []
    times: dict[tuple[str, str], float] = {}
    plan = [("efficientnet_lite0", 50), ("vit_b_16", 16 if quick else 50)]
    for model, steps in plan:
        runs = [(8, _ig_child(model, steps, 8, threads))]
        if steps == 50:
            times[model, "integrated_gradients"] = runs[0][1]["seconds"]
        predicted, how = _predict_naive(model, runs[0][1]["extra_gb"], steps, threads, quick)
        if quick and model == "vit_b_16":
            skip = "not in --quick"
        elif predicted > NAIVE_LIMIT_GB:
            skip = f"predicted +{predicted:.1f} GB > {NAIVE_LIMIT_GB:.0f} GB"
        elif predicted > _available_gb() - 1.0:
            skip = f"predicted +{predicted:.1f} GB, only {_available_gb():.1f} GB available"
        else:
            skip = ""
            runs.append((steps, _ig_child(model, steps, steps, threads)))
        for batch, r in runs:
            source = "VmHWM" if r["reset"] else "sampling (clear_refs refused)"
            print(f"{model:<19} {steps:>5} {batch:>5} {r['baseline'] / 1024:>6.0f} MB "
                  f"{r['extra_gb']:>6.2f} GB {r['sampled_gb']:>6.2f} GB {r['after'] / 1024:>5.0f} MB "
                  f"{r['seconds']:>6.1f}s {r['load_peak'] / 1024:>6.0f} MB {r['ru_maxrss'] / 1024:>6.0f} MB  {source}" + ("" if r["nonzero"] else "  (attribution all zero!)"))
            label = f"IG {steps} steps, batch {batch}" + (" (naive)" if batch == steps else "")
            target = IG_MEMORY_TARGET_GB if batch == 8 and steps == 50 else None
            note = ""
            if batch == 8 and steps != 50:
                note = (f"--quick: {steps} steps = two full batches of 8, the same peak as 50 steps; "
                        f"target {IG_MEMORY_TARGET_GB} GB applies to the full run")
            results.append(Result(BENCH, f"{model} {label}: peak RSS +", r["extra_gb"], "GB", target, note=note))
        if quick and model == "vit_b_16":
            print(f"{'':<19} naive (un-batched) run: not in --quick")
        else:
            print(f"{'':<19} naive (un-batched) increase predicted: +{predicted:.2f} GB ({how})"
                  + (f"; run skipped: {skip}" if skip else ""))
        sys.stdout.flush()
    print("'load peak': VmHWM before the reset, ru_maxrss: at the end; both count the model loading, which is "
          "why neither is the measure.\n'after': RSS once attribute returned; what it keeps over the baseline is "
          "glibc's free lists (malloc_trim(0) hands it back; repeated calls do not grow it), not live tensors")
    return results, times


# --- 3. Grad-CAM against pytorch-grad-cam -----------------------------------------------------


def _pearson(a, b) -> float:
    import numpy as np

    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def _gradcam_compare(short: str, loaded, layer: str, image, pairs: int, warmup: int) -> dict:
    import numpy as np
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from vizapp.explain.attribution import attribute
    from vizapp.probing.probe import resolve_layers

    module = resolve_layers(loaded.module, [layer])[layer]
    try:
        ours = attribute(loaded, image, "gradcam", layer=layer)
        x = loaded.preprocess.batch(image)
        with GradCAM(model=loaded.module, target_layers=[module]) as cam:
            theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(ours.target)])[0]
        size = (theirs.shape[1], theirs.shape[0])  # cv2: (width, height)
        ours_224 = scale_cam_image(scale_cam_image(ours.raw[None], size))[0]  # their post-processing

        def run_ours():
            attribute(loaded, image, "gradcam", layer=layer)

        def run_theirs():
            with GradCAM(model=loaded.module, target_layers=[module]) as c:
                c(input_tensor=loaded.preprocess.batch(image), targets=None)

        t_ours, t_theirs = interleaved(run_ours, run_theirs, pairs=pairs, warmup=warmup)
    finally:
        loaded.module.zero_grad(set_to_none=True)  # pytorch-grad-cam's backward fills the parameters' .grad
    return {
        "model": short, "layer": layer, "grid": "x".join(map(str, ours.raw.shape)), "target": ours.target,
        "r": _pearson(ours_224, theirs), "max_diff": float(np.abs(ours_224 - theirs).max()),
        "r_display": _pearson(ours.map, theirs),
        "ours_ms": statistics.median(t_ours) * 1000, "theirs_ms": statistics.median(t_theirs) * 1000,
        "ratio": statistics.median(t_ours) / statistics.median(t_theirs),
    }


def _gradcam(quick: bool, image) -> list[Result]:
    from vizapp.explain.attribution import default_cam_layer

    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        print("\nGrad-CAM comparison skipped: pytorch-grad-cam is not installed (pip install -e '.[bench]')")
        return [Result(BENCH, "gradcam vs pytorch-grad-cam: not installed", float("nan"), "", error=True)]
    pairs, warmup = (3, 1) if quick else (10, 2)
    lite = load_cached_model("efficientnet_lite0")
    cases = [("efficientnet_lite0", lite, default_cam_layer(lite)), ("resnet18", _seeded_resnet18(), "layer4")]
    rows = [_gradcam_compare(short, loaded, layer, image, pairs, warmup) for short, loaded, layer in cases]
    print(f"\nGrad-CAM, ours (vizapp.explain.attribution.attribute 'gradcam') vs pytorch-grad-cam "
          f"{_version('grad-cam')} GradCAM, same layer, class and input (chelsea);\n"
          f"r: Pearson at 224x224, our layer-grid map put through pytorch-grad-cam's scale_cam_image "
          f"(min-max, cv2 bilinear resize, min-max);\nr(display): our .map (torch bilinear, max-scaled) vs theirs; "
          f"time: image -> map, predicted class, {pairs} interleaved pairs, medians")
    print(f"\n{'model':<19} {'layer':<7} {'grid':<6} {'class':>5} {'r':>8} {'max|diff|':>9} {'r(display)':>10} "
          f"{'ours':>9} {'theirs':>9} {'ours/theirs':>11}")
    results: list[Result] = []
    for r in rows:
        print(f"{r['model']:<19} {r['layer']:<7} {r['grid']:<6} {r['target']:>5} {r['r']:>8.5f} "
              f"{r['max_diff']:>9.2e} {r['r_display']:>10.5f} {r['ours_ms']:>6.1f} ms {r['theirs_ms']:>6.1f} ms "
              f"{r['ratio']:>10.3f}x")
        results.append(Correlation(BENCH, f"gradcam {r['model']} {r['layer']}: Pearson r vs pytorch-grad-cam", r["r"],
                               "", CORRELATION_TARGET))
        results.append(Result(BENCH, f"gradcam {r['model']}: time ours / pytorch-grad-cam", r["ratio"], "x",
                              note="" if r is not rows[0] else
                              "ours also runs a no-grad forward to pick the class and builds the display map"))
    return results


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# --- the benchmark ------------------------------------------------------------------------------


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    print_header("Attributions: time per method; Integrated Gradients memory; Grad-CAM vs pytorch-grad-cam",
                 quick, threads)
    from vizapp.explain.attribution import METHODS

    image = chelsea()
    cases = [("efficientnet_lite0", load_case("efficientnet_lite0")), ("vit_b_16", load_case("vit_b_16"))]
    memory_rows, child_times = _memory(quick, threads)
    sys.stdout.flush()
    # ViT-B/16's Integrated Gradients (~50 ViT-B forward + backward passes) is timed once, in its
    # memory child (a fresh process after a warm-up forward), rather than a second time here.
    reuse = {key: t for key, t in child_times.items() if key[0] == "vit_b_16"}
    print("\ntime per method: attribute(loaded, chelsea, method), predicted class, 224 px, wall time of the call "
          "(steps 50, samples 16, batches of 8: the defaults)")
    table, info = _time_methods(cases, image, quick, reuse)
    names = [short for short, _ in cases]
    print(f"\n{'method':<22}" + "".join(f"{n:>21}" for n in names))
    results: list[Result] = []
    for method in METHODS:
        cells = []
        for n in names:
            cell = table[method].get(n, "-")
            cells.append(f"{cell:>21}" if isinstance(cell, str) else f"{cell[0]:>14.3f} s ({cell[1]})")
            if not isinstance(cell, str):
                results.append(Result(BENCH, f"{method} {n}", cell[0], "s"))
        print(f"{method:<22}" + "".join(cells))
    print("(n): number of timed runs, median shown; explained: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    if reuse:
        print("vit_b_16 integrated_gradients: the time of the memory child's run (50 steps, batches of 8)")
    if quick:
        print(f"skipped with --quick: {', '.join(SLOW_VIT_METHODS)} on vit_b_16 (50 to 200 ViT-B passes each)")
    sys.stdout.flush()
    results.extend(memory_rows)
    results.extend(_gradcam(quick, image))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads), "Attribution summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
