"""Extraction throughput on an accelerator (prepared for the H200).

``python -m benchmarks.device_extract --out DIR`` on a GPU machine: the ViT-B/16 and ResNet-50
(random weights) through the engine and through a plain jitted loop at batch 256 over 4,096
images, with images/s and model FLOP utilisation against the device's float32 matmul rate
measured in the run. ``--quick`` runs tiny models anywhere (the tests run it on the CPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path

try:
    from benchmarks.bench_extract import CASES, COLUMNS, QUICK_IMAGES, measure
    from benchmarks.common import markdown_table, matmul_rate, publish_device
except ImportError:  # run as a script from the benchmarks folder
    from bench_extract import CASES, COLUMNS, QUICK_IMAGES, measure
    from common import markdown_table, matmul_rate, publish_device

IMAGES, BATCH = 4096, 256


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models (runs anywhere)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    rate = matmul_rate(1024 if args.quick else 8192)
    count, batch = (QUICK_IMAGES, 4) if args.quick else (IMAGES, BATCH)
    rows = measure({name: count for name in CASES}, quick=args.quick, batch=batch, rate=rate)
    body = (
        f"{markdown_table(rows, COLUMNS)}\n\nbatch {batch}; float32 matmul rate (square products) measured in "
        f"this run: {rate / 1e12:.1f} TFLOP/s.\n"
    )
    return publish_device("extract", body, args.out, save=not args.quick)


if __name__ == "__main__":
    main()
