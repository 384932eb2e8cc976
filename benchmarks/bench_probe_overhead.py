"""Probe overhead: a forward pass with one layer captured, over the same pass without.

Target (EfficientNet-Lite0, CPU): captured / plain <= 1.15.

Two like-for-like comparisons per layer, each timed interleaved (A B, B A, ...) after
a warm-up, medians over many pairs:

* ``run``: ``vizapp.probing.inference.run(loaded, image, [layer])`` vs ``run(loaded, image, [])``;
  both include preprocessing, softmax/top-k and the numpy hand-off, as the app does.
* ``forward``: ``with capture(model, [layer]): model(x)`` vs ``model(x)``, both under
  ``torch.inference_mode()`` on the same preprocessed tensor (no preprocessing in either).

A third comparison is the engine's own cost (target <= 1.05): ``run(loaded, image, [])`` against
its bare work, ``model(preprocess.batch(image))`` under ``torch.inference_mode()`` (and with
``conv_head`` captured in both arms): what ``run`` adds in top-k, the display image, the numpy
hand-off and its bookkeeping.

Run alone: ``python benchmarks/bench_probe_overhead.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import statistics
import sys

from _common import (
    Result,
    interleaved,
    load_cached_model,
    median_ms,
    parse_args,
    print_header,
    print_table,
    setup_threads,
)

BENCH = "probe_overhead"
TARGET = 1.15
TARGET_ENGINE = 1.05
EFFNET_LAYERS = ("conv_stem", "blocks.3", "conv_head")
RESNET_LAYERS = ("layer1", "layer4")


def _resnet18_untrained():
    """torchvision resnet18(weights=None) wrapped as a LoadedModel (no download, random weights)."""
    import torchvision.models as tvm

    from models import LoadedModel, Preprocess

    module = tvm.resnet18(weights=None).eval()
    return LoadedModel("resnet18", "ResNet-18 (untrained)", "cnn", module, Preprocess(), None,
                       "weights=None", trained=False)


def _chelsea():
    from vizapp.inputs.images import load_image, sample_images

    samples = {s.name: s.path for s in sample_images()}
    if "chelsea" not in samples:
        raise SystemExit("scikit-image's sample images are missing (pip install scikit-image)")
    return load_image(samples["chelsea"]), "chelsea"


def _measure(loaded, image, layer: str, pairs: int, warmup: int) -> dict[str, dict[str, float]]:
    import torch

    from vizapp.probing.inference import run
    from vizapp.probing.probe import capture

    model = loaded.module
    x = loaded.preprocess.batch(image)
    shape = tuple(run(loaded, image, [layer]).activations[layer].shape)

    def forward_plain():
        with torch.inference_mode():
            model(x)

    def forward_captured():
        with torch.inference_mode(), capture(model, [layer]):
            model(x)

    variants = {
        "run": (lambda: run(loaded, image, []), lambda: run(loaded, image, [layer])),
        "forward": (forward_plain, forward_captured),
    }
    out: dict[str, dict[str, float]] = {}
    for name, (plain, captured) in variants.items():
        ta, tb = interleaved(plain, captured, pairs=pairs, warmup=warmup)
        pair_ratios = [b / a for a, b in zip(ta, tb, strict=True)]
        out[name] = {
            "plain_ms": median_ms(ta),
            "captured_ms": median_ms(tb),
            "ratio": statistics.median(tb) / statistics.median(ta),
            "pair_ratio": statistics.median(pair_ratios),
            "min_ratio": min(tb) / min(ta),
        }
    out["shape"] = shape  # type: ignore[assignment]
    return out


def _engine(loaded, image, layer: str | None, pairs: int, warmup: int) -> dict[str, float]:
    """``run()`` against preprocessing + a bare forward (with ``layer`` captured in both, if given)."""
    import contextlib

    import torch

    from vizapp.probing.inference import run
    from vizapp.probing.probe import capture

    model = loaded.module.eval()
    layers = [layer] if layer else []

    def bare():
        x = loaded.preprocess.batch(image)
        with torch.inference_mode(), (capture(model, layers) if layers else contextlib.nullcontext()):
            model(x)

    ta, tb = interleaved(bare, lambda: run(loaded, image, layers), pairs=pairs, warmup=warmup)
    return {
        "plain_ms": median_ms(ta),
        "captured_ms": median_ms(tb),
        "ratio": statistics.median(tb) / statistics.median(ta),
        "pair_ratio": statistics.median([b / a for a, b in zip(ta, tb, strict=True)]),
        "min_ratio": min(tb) / min(ta),
    }


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    print_header("Probe overhead: forward with a layer captured / plain forward", quick, threads)
    pairs, warmup = (12, 3) if quick else (60, 8)
    image, image_name = _chelsea()
    print(f"image: {image_name} {image.size[0]}x{image.size[1]}; {pairs} interleaved pairs per "
          f"comparison after {warmup} warm-up pairs; ratio = median(captured) / median(plain)")
    cases = [("efficientnet_lite0", load_cached_model("efficientnet_lite0"), EFFNET_LAYERS, True)]
    cases.append(("resnet18 (weights=None)", _resnet18_untrained(), RESNET_LAYERS, False))

    results: list[Result] = []
    print(f"\n{'model':<24} {'layer':<10} {'output':<14} {'path':<8} {'plain':>9} {'captured':>9} "
          f"{'+ms':>6} {'ratio':>7} {'pair-med':>8} {'min/min':>7}")
    for model_name, loaded, layers, primary in cases:
        for layer in layers:
            m = _measure(loaded, image, layer, pairs, warmup)
            shape = "x".join(map(str, m.pop("shape")))
            for path, r in m.items():
                print(f"{model_name:<24} {layer:<10} {shape:<14} {path:<8} {r['plain_ms']:>6.2f} ms "
                      f"{r['captured_ms']:>6.2f} ms {r['captured_ms'] - r['plain_ms']:>+6.2f} {r['ratio']:>6.3f}x {r['pair_ratio']:>7.3f}x "
                      f"{r['min_ratio']:>6.3f}x")
                short = "effnet-lite0" if primary else "resnet18"
                results.append(Result(BENCH, f"{short} {layer} ({path})", r["ratio"], "x", TARGET))
            sys.stdout.flush()
    print(f"\nengine: run(loaded, image, layers) / (preprocess.batch + model(x) under inference_mode, the same "
          f"layers captured); target <= {TARGET_ENGINE}")
    print(f"{'model':<24} {'layers':<10} {'bare':>9} {'run()':>9} {'+ms':>6} {'ratio':>7} {'pair-med':>8} {'min/min':>7}")
    for model_name, loaded, layers, primary in cases:
        for layer in (None, layers[-1]):
            r = _engine(loaded, image, layer, pairs, warmup)
            print(f"{model_name:<24} {layer or '(none)':<10} {r['plain_ms']:>6.2f} ms {r['captured_ms']:>6.2f} ms "
                  f"{r['captured_ms'] - r['plain_ms']:>+6.2f} {r['ratio']:>6.3f}x {r['pair_ratio']:>7.3f}x "
                  f"{r['min_ratio']:>6.3f}x")
            short = "effnet-lite0" if primary else "resnet18"
            results.append(Result(BENCH, f"{short} run() / preprocess + forward ({layer or 'no layer'})", r["ratio"], "x",
                                  TARGET_ENGINE if primary else None))
            sys.stdout.flush()
    print("\npath 'run' includes preprocessing and post-processing in both arms; 'forward' is model(x) "
          "alone in both.\n'pair-med' is the median of per-pair ratios, 'min/min' the ratio of the "
          "fastest calls: both are cross-checks on the drift.")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads), "Probe overhead summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
