"""Attention capture overhead: a ViT forward pass with every attention map captured, over the same pass without.

Target (torchvision ViT-B/16, 224 px, CPU): captured / plain <= 1.3.

Both arms run on the same preprocessed chelsea tensor under ``torch.inference_mode()``;
the captured arm wraps the call in ``with vizapp.explain.attention.capture_attention(model):``
(all 12 blocks: torchvision's ``MultiheadAttention`` is asked for per-head weights, so it
leaves its fused fast path and returns the softmax it used). The arms are timed
interleaved (A B, B A, ...) after a warm-up; the summary shows median(captured) /
median(plain). Weights are random (``vit_b_16()``, nothing can be downloaded here):
the cost of a forward pass does not depend on them.

timm's DeiT-Small/16 (``deit_small_patch16_224``, random weights) is shown for
information: capture switches its fused SDPA off for the pass (explicit softmax
instead), so its ratio measures that switch, not hooks.

Also printed (information): that each captured pass returns the plain pass's logits,
and the wall time of ``analyse_attention`` (the attention view's job) with and without
the gradient-weighted rollout.

Run alone: ``python benchmarks/bench_attention.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import statistics
import sys
import time

from _common import (
    Result,
    interleaved,
    median_ms,
    parse_args,
    print_header,
    print_table,
    setup_threads,
)

BENCH = "attention"
TARGET = 1.3


def vit_b16_random(seed: int = 0):
    """torchvision ``vit_b_16()`` with random weights, eval mode.

    torchvision initialises the classifier head to zeros (every logit 0, every gradient
    through the head 0); it is re-drawn here so attributions and gradient rollout have
    something to follow. The forward cost is unchanged.
    """
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.vit_b_16(weights=None)
    with torch.no_grad():
        model.heads.head.weight.normal_(0.0, 0.02)
    return model.eval()


def deit_small_random(seed: int = 0):
    import timm
    import torch

    torch.manual_seed(seed)
    return timm.create_model("deit_small_patch16_224", pretrained=False).eval()


def as_loaded(module, name: str, title: str):
    """Wrap a random-weight ViT as a LoadedModel: ImageNet preprocessing at 224, 1000 class names."""
    from models import LoadedModel, Preprocess, imagenet_classes

    return LoadedModel(name, title, "vit", module.eval(), Preprocess(), imagenet_classes(),
                       "random weights (benchmark)", trained=False)


def chelsea():
    from vizapp.inputs.images import load_image, sample_images

    samples = {s.name: s.path for s in sample_images()}
    if "chelsea" not in samples:
        raise SystemExit("scikit-image's sample images are missing (pip install scikit-image)")
    return load_image(samples["chelsea"])


def _measure(model, x, pairs: int, warmup: int) -> dict:
    import torch

    from vizapp.explain.attention import attention_modules, capture_attention

    with torch.inference_mode():
        ref = model(x)
        with capture_attention(model) as store:
            out = model(x)
    maps = dict(store)
    n_modules = len(attention_modules(model))

    def plain():
        with torch.inference_mode():
            model(x)

    def captured():
        with torch.inference_mode(), capture_attention(model):
            model(x)

    ta, tb = interleaved(plain, captured, pairs=pairs, warmup=warmup)
    first = next(iter(maps.values()))
    return {
        "plain_ms": median_ms(ta),
        "captured_ms": median_ms(tb),
        "ratio": statistics.median(tb) / statistics.median(ta),
        "pair_ratio": statistics.median(b / a for a, b in zip(ta, tb, strict=True)),
        "min_ratio": min(tb) / min(ta),
        "maps": f"{len(maps)}/{n_modules} x {'x'.join(map(str, first.shape))}",
        "max_diff": float((out - ref).abs().max()),
        "row_sum_err": float((first.sum(-1) - 1).abs().max()),
    }


def _analyse_times(loaded, image, repeats: int) -> dict[str, float]:
    from vizapp.explain.attention import analyse_attention

    out = {}
    for gradient in (False, True):
        analyse_attention(loaded, image, gradient=gradient)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            analyse_attention(loaded, image, gradient=gradient)
            times.append(time.perf_counter() - t0)
        out["with gradient rollout" if gradient else "attention only"] = statistics.median(times)
    return out


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    print_header("Attention capture: ViT forward with every attention map captured / plain forward",
                 quick, threads)
    image = chelsea()
    vit = as_loaded(vit_b16_random(), "vit_b_16", "ViT-B/16 (random weights)")
    deit = as_loaded(deit_small_random(), "deit_small", "DeiT-Small/16 (random weights)")
    x = vit.preprocess.batch(image)
    cases = [
        # name, loaded, pairs, warm-up pairs, target
        ("vit_b_16 (torchvision)", vit, *((4, 1) if quick else (16, 2)), TARGET),
        ("deit_small (timm)", deit, *((6, 1) if quick else (30, 3)), None),
    ]
    print("input: chelsea, 1x3x224x224 (ImageNet preprocessing); both arms under torch.inference_mode(); "
          "interleaved pairs after warm-up pairs; ratio = median(captured) / median(plain)")
    print(f"\n{'model':<23} {'pairs':>5} {'plain':>10} {'captured':>10} {'+ms':>7} {'ratio':>7} "
          f"{'pair-med':>8} {'min/min':>7}  maps captured")
    results: list[Result] = []
    checks = []
    for name, loaded, pairs, warmup, target in cases:
        m = _measure(loaded.module, x, pairs, warmup)
        print(f"{name:<23} {pairs:>5} {m['plain_ms']:>7.1f} ms {m['captured_ms']:>7.1f} ms "
              f"{m['captured_ms'] - m['plain_ms']:>+7.1f} {m['ratio']:>6.3f}x {m['pair_ratio']:>7.3f}x "
              f"{m['min_ratio']:>6.3f}x  {m['maps']}")
        sys.stdout.flush()
        checks.append((name, m))
        note = "" if target is not None else "fused SDPA is switched off during capture: informative only"
        results.append(Result(BENCH, f"{name.split()[0]} capture all / plain forward", m["ratio"], "x", target,
                              note=note))
    print("\n'pair-med' is the median of per-pair ratios, 'min/min' the ratio of the fastest calls "
          "(cross-checks on drift).")
    for name, m in checks:
        print(f"check {name}: captured logits - plain logits, max |diff| = {m['max_diff']:.2e}; "
              f"attention rows sum to 1 within {m['row_sum_err']:.1e}")

    repeats = 1 if quick else 3
    times = _analyse_times(vit, image, repeats)
    print(f"\nanalyse_attention(vit_b_16, chelsea), the attention view's job (preprocess, captured forward, "
          f"distance; median of {repeats} after a warm-up):")
    for label, seconds in times.items():
        print(f"  {label:<22} {seconds * 1000:8.1f} ms")
        results.append(Result(BENCH, f"vit_b_16 analyse_attention, {label}", seconds * 1000, "ms"))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads), "Attention capture summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
