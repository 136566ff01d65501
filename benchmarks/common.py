"""Shared benchmark helpers: timing with warm-up, machine description, result files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

RESULTS = Path(__file__).parent / "results"

# This machine's environment sets these, which hold OpenBLAS to its Haswell (AVX2) kernels and a
# small L2 size on an AVX-512 CPU; a user's NumPy runs without them. NumPy-based peers run "as a
# user runs them" (:func:`run_as_user`): in a process whose environment lacks them. Tests and CI
# keep them.
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
AS_USER_NOTE = (
    "NumPy-based peers run as a user runs them: in a separate Python process whose environment has "
    "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (this machine's environment may set them, which holds "
    "OpenBLAS to AVX2 kernels on this AVX-512 CPU); jaxagree runs in this process, as the tests do."
)


def user_environment() -> dict[str, str]:
    """This process's environment without :data:`BLAS_VARIABLES`."""
    return {key: value for key, value in os.environ.items() if key not in BLAS_VARIABLES}


def run_as_user(function, **inputs) -> dict:
    """Call the module-level ``function(**inputs)`` in a fresh Python process whose environment
    is :func:`user_environment`, and return what it returns (a dict of arrays or numbers).

    ``inputs`` travel as an ``.npz`` (scalars become 0-d arrays); the function times itself and
    returns its times with its answers. Its module is imported by path in the new process, so it
    must import its peers (statsmodels, rsatoolbox, NumPy) inside the function."""
    module = sys.modules[function.__module__]
    with tempfile.TemporaryDirectory() as folder:
        path_in, path_out = Path(folder) / "in.npz", Path(folder) / "out.npz"
        np.savez(path_in, **inputs)
        command = [sys.executable, str(Path(__file__).resolve()), "--as-user",
                   str(Path(module.__file__).resolve()), function.__name__, str(path_in), str(path_out)]
        done = subprocess.run(command, env=user_environment(), cwd=Path(__file__).parent.parent)
        if done.returncode:
            raise RuntimeError(f"the peer {function.__name__} failed (exit status {done.returncode})")
        with np.load(path_out) as out:
            return {name: out[name] for name in out.files}


def _as_user_main(module_path: str, name: str, path_in: str, path_out: str) -> None:
    """The other end of :func:`run_as_user`."""
    import importlib.util

    for key in BLAS_VARIABLES:  # the process was started without them; say so if not
        assert key not in os.environ, f"{key} is set in the peer's process"
    spec = importlib.util.spec_from_file_location(f"_peer_{Path(module_path).stem}", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with np.load(path_in) as data:
        inputs = {key: data[key] for key in data.files}
    np.savez(path_out, **getattr(module, name)(**inputs))


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
    """Whether a peer package is installed; says so when it is not (its columns stay empty).
    Found, not imported: peers run in their own processes, and importing rsatoolbox here alone
    took 6.7 s."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
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


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--as-user":
    _as_user_main(*sys.argv[2:])
