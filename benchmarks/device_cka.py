"""All-pairs CKA on an accelerator: the scaling table at 500-1,000 models (prepared for the H200).

Run on a machine with a GPU (``python -m benchmarks.device_cka --out DIR``); ``--quick`` runs a
small version anywhere (the test suite runs it on the CPU so the script cannot rot). It:

1. checks ``cka_matrix`` against a float64 NumPy reference on the device (float32, and the
   reduced precisions' error);
2. measures the device's matmul rate at each precision (square 8192 products);
3. times ``cka_matrix`` for 500, 750 and 1,000 models at two stimulus-set sizes and three
   matmul precisions, with the FLOPs of the chosen path, their share of the measured rate, and
   the device's peak memory (cases run from smallest to largest, so the running peak is each
   case's own);
4. writes the tables with the date and device to ``DIR`` (default ``benchmarks/results``).

Features are generated on the device (random projections of shared latents, two families), so
host memory and transfer do not limit the sizes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxagree as ja

try:
    from benchmarks.common import markdown_table, publish_device
except ImportError:  # run as a script from the benchmarks folder
    from common import markdown_table, publish_device

PRECISIONS = ("float32", "tensorfloat32", "bfloat16")
MODELS = (500, 750, 1000)
SHAPES = ((2000, 768), (10000, 1024))  # stimuli, dims
QUICK_MODELS, QUICK_SHAPES = (4, 6), ((64, 16),)


def cka_reference(features: np.ndarray) -> np.ndarray:
    """Linear CKA of every pair in float64 NumPy: centred Grams, normalised, one product (peer (a)
    of ``bench_cka``, in float64)."""
    grams = []
    for x in np.asarray(features, np.float64):
        centred = x - x.mean(0, keepdims=True)
        gram = centred @ centred.T
        grams.append((gram / np.linalg.norm(gram)).ravel())
    stacked = np.stack(grams)
    return stacked @ stacked.T


def device_features(key, num_models: int, num_stimuli: int, dim: int) -> jax.Array:
    """``[models, stimuli, dim]`` float32 made on the device, one model at a time."""
    latent_key, model_key = jax.random.split(key)
    latent = jax.random.normal(latent_key, (num_stimuli, 64))

    @jax.jit
    def one(k, m):
        a, b = jax.random.split(k)
        projected = latent @ jax.random.normal(a, (64, dim)) / 8
        shaped = jnp.where(m % 2 == 1, jnp.tanh(projected), jnp.maximum(projected, 0))
        return shaped + 5.0 + 0.3 * jax.random.normal(b, (num_stimuli, dim))

    keys = jax.random.split(model_key, num_models)
    return jax.lax.map(lambda km: one(*km), (keys, jnp.arange(num_models)))


def matmul_rates(size: int) -> dict[str, float]:
    """FLOP/s of a square product at each precision, as cka_matrix runs them (bfloat16 operands
    cast beforehand, so that the rate is the product's alone)."""
    a = jax.random.normal(jax.random.key(1), (size, size))
    rates = {}
    for precision in PRECISIONS:
        fn = jax.jit(lambda x, p=precision: ja.cka.plan.matmul(x, x, p))
        a = a.astype(jnp.bfloat16) if precision == "bfloat16" else a
        fn(a).block_until_ready()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            fn(a).block_until_ready()
            best = min(best, time.perf_counter() - start)
        rates[precision] = 2 * size**3 / best
    return rates


def peak_bytes() -> float:
    stats = jax.devices()[0].memory_stats() or {}
    return float(stats.get("peak_bytes_in_use", float("nan")))


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (runs anywhere)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    models, shapes = (QUICK_MODELS, QUICK_SHAPES) if args.quick else (MODELS, SHAPES)

    check = np.asarray(device_features(jax.random.key(0), 8, 64 if args.quick else 1000, 32))
    expected = cka_reference(check)
    errors = {p: float(np.abs(np.asarray(ja.cka_matrix(check, matmul_precision=p)) - expected).max())
              for p in PRECISIONS}
    print("max |error| vs float64:", errors, flush=True)
    assert errors["float32"] < 1e-4, errors

    rates = matmul_rates(1024 if args.quick else 8192)
    print("matmul TFLOP/s:", {p: round(r / 1e12, 1) for p, r in rates.items()}, flush=True)

    rows = []
    for num_stimuli, dim in shapes:
        for num_models in models:
            features = device_features(jax.random.key(num_models), num_models, num_stimuli, dim)
            path = ja.cka.plan.choose_path([dim] * num_models, num_stimuli, ja.cka.plan.default_max_bytes(), "auto")
            for precision in PRECISIONS:
                start = time.perf_counter()
                ja.cka_matrix(features, matmul_precision=precision).block_until_ready()
                first = time.perf_counter() - start
                best = float("inf")
                for _ in range(1 if args.quick else 3):
                    start = time.perf_counter()
                    ja.cka_matrix(features, matmul_precision=precision).block_until_ready()
                    best = min(best, time.perf_counter() - start)
                row = {
                    "case": f"{num_models} x {num_stimuli:,} x {dim}", "precision": precision, "path": path.name,
                    "seconds": best, "compile_s": max(first - best, 0.0), "tflops": path.flops / best / 1e12,
                    "share": path.flops / best / rates[precision], "peak_gb": peak_bytes() / 1e9,
                    "features_gb": features.nbytes / 1e9,
                }
                rows.append(row)
                print(row, flush=True)
            del features

    columns = [
        ("case", "models x stimuli x dims", "s"), ("precision", "matmul precision", "s"), ("path", "path", "s"),
        ("seconds", "time (s)", ".3f"), ("tflops", "TFLOP/s of the path", ".1f"),
        ("share", "share of the matmul rate at that precision", ".0%"), ("features_gb", "features (GB)", ".1f"),
        ("peak_gb", "device peak memory (GB)", ".1f"), ("compile_s", "first-call overhead (s)", ".2f"),
    ]
    table = markdown_table(rows, columns)
    notes = (
        "\n\nmatmul rate (square " + ("1024" if args.quick else "8192") + " products) in TFLOP/s: "
        + ", ".join(f"{p} {r / 1e12:.1f}" for p, r in rates.items())
        + ".\nmax |CKA error| against float64 NumPy (8 models x "
        + ("64" if args.quick else "1,000") + " x 32): "
        + ", ".join(f"{p} {e:.1e}" for p, e in errors.items())
        + ".\nDevice peak memory is the process's running peak; cases run from smallest to largest.\n"
    )
    return publish_device("cka", table + notes, args.out, save=not args.quick)


if __name__ == "__main__":
    main()
