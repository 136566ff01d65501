"""Run every benchmark and print its table of ratios against peers (``make bench``).

Each benchmark writes its table, with the machine and date, to ``benchmarks/results/``.
Pass ``--quick`` for a small smoke run that saves nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (  # noqa: E402
    bench_agreement,
    bench_agreement_bootstrap,
    bench_bootstrap,
    bench_cka,
    bench_cka_grid,
    bench_cost_model,
    bench_extract,
    bench_sources,
)

BENCHMARKS = {"agreement": bench_agreement.main, "agreement-bootstrap": bench_agreement_bootstrap.main,
              "cka": bench_cka.main, "cka-grid": bench_cka_grid.main,
              "bootstrap": bench_bootstrap.main, "extract": bench_extract.main,
              "sources": bench_sources.main, "cost-model": bench_cost_model.main}


def main(argv: list[str]) -> None:
    for name, run in BENCHMARKS.items():
        print(f"\n## {name}\n")
        run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
