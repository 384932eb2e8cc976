"""Run every benchmark in one process and print one summary table (measured, target, pass/miss).

``python benchmarks/run_all.py [--quick] [--threads N]``. Benchmarks report; they never
fail on a timing. The exit status is 1 only if a benchmark crashed.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import bench_attention
import bench_attribution
import bench_deck
import bench_embedding
import bench_featurevis
import bench_gui_stall
import bench_image_to_pixels
import bench_indexing
import bench_lecture_demo
import bench_live
import bench_probe_overhead
import bench_training
from _common import Result, device_report, parse_args, print_table, setup_threads

# Nothing above imports Qt; the GUI benchmarks import it lazily, offscreen unless told otherwise.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

BENCHMARKS = (
    ("probe_overhead", bench_probe_overhead.run),
    ("image_to_pixels", bench_image_to_pixels.run),
    ("gui_stall", bench_gui_stall.run),
    ("deck", bench_deck.run),
    ("indexing", bench_indexing.run),
    ("embedding", bench_embedding.run),
    ("attention", bench_attention.run),
    ("attribution", bench_attribution.run),
    ("training", bench_training.run),
    ("lecture_demo", bench_lecture_demo.run),
    ("live", bench_live.run),
    ("featurevis", bench_featurevis.run),
)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    threads = setup_threads(args.threads)
    results: list[Result] = []
    timings: list[tuple[str, float]] = []
    crashed = False
    t_all = time.perf_counter()
    for name, run in BENCHMARKS:
        t0 = time.perf_counter()
        try:
            results.extend(run(quick=args.quick, threads=args.threads))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - report and go on to the next benchmark
            traceback.print_exc()
            results.append(Result(name, f"crashed: {type(exc).__name__}: {exc}"[:70], float("nan"), "",
                                  error=True))
            crashed = True
        timings.append((name, time.perf_counter() - t0))
        print()
        sys.stdout.flush()
    total = time.perf_counter() - t_all

    info = device_report()
    print("=" * 78)
    print(f"vizapp benchmarks: {'quick' if args.quick else 'full'} run, torch threads = {threads} "
          f"(cores - 1 unless --threads)")
    print(f"cpu: {info['cpu']} ({info['cores']}); torch {info['torch']}")
    print("wall time: " + ", ".join(f"{n} {s:.1f} s" for n, s in timings) + f"; total {total:.1f} s")
    print_table(results, "Summary (target '<=': an upper bound, lower is better; '>=': a lower bound)")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
