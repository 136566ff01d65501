"""Shared benchmark helpers: timing with warm-up, machine description, result files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

RESULTS = Path(__file__).parent / "results"


def block(value):
    """Wait for every jax array in ``value`` (NamedTuples and tuples included)."""
    return jax.block_until_ready(value)


def timed(fn, *, repeats: int = 5) -> tuple[float, float]:
    """(first call seconds, best of ``repeats`` later calls). The first call includes compiling."""
    start = time.perf_counter()
    block(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        best = min(best, time.perf_counter() - start)
    return first, best


def copy_bandwidth(num_bytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Bytes per second that one read-and-write pass achieves here (jitted ``x + 1``)."""
    x = jax.numpy.ones(num_bytes // 4, jax.numpy.float32)
    step = jax.jit(lambda a: a + 1)
    _, best = timed(lambda: step(x), repeats=repeats)
    return 2 * num_bytes / best


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of a square jitted matmul here."""
    a = jax.numpy.ones((size, size), jax.numpy.float32)
    mm = jax.jit(lambda x: x @ x)
    _, best = timed(lambda: mm(a), repeats=repeats)
    return 2 * size**3 / best


def machine() -> dict:
    device = jax.devices()[0]
    return {
        "date": _dt.date.today().isoformat(),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "backend": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "num_devices": len(jax.devices()),
    }


def save(name: str, info: dict, rows: list[dict], table: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stem = f"{name}-{info['date']}-{info['backend']}-{info['cores']}cores"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    path = RESULTS / f"{stem}.md"
    header = " · ".join(f"{k}: {v}" for k, v in info.items())
    path.write_text(f"# {name}\n\n{header}\n\n{table}\n")
    return path


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, heading, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("—" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv, description: str):
    """The options every benchmark takes: --quick (a small smoke run that saves nothing), --no-save."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="one small case (a smoke run)")
    parser.add_argument("--no-save", action="store_true")
    return parser.parse_args(argv)


def publish_device(name: str, body: str, out: Path, *, save: bool) -> str:
    """A device script's report: a title, the machine and date, ``body``; written to
    ``out/NAME-device-DATE-BACKEND.md`` when ``save``."""
    info = machine()
    header = " · ".join(f"{k}: {v}" for k, v in info.items())
    text = f"# {name} on the device\n\n{header}\n\n{body}"
    print(text)
    if save:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}-device-{info['date']}-{info['backend']}.md"
        path.write_text(text)
        print(f"wrote {path}")
    return text


def peer_available(module: str) -> bool:
    """Whether a peer package imports; says so when it does not (its columns stay empty)."""
    try:
        __import__(module)
    except ImportError:
        print(f"{module} is not installed (pip install -e '.[bench]'): its columns are left empty")
        return False
    return True


def publish(name: str, rows: list[dict], columns, notes: str, args) -> str:
    """Print the table and notes; write them with the machine and date unless quick or --no-save."""
    table = markdown_table(rows, columns)
    print(table + notes)
    if not args.no_save and not args.quick:
        print(f"wrote {save(name, machine(), rows, table + notes)}")
    return table
