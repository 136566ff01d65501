"""Every device benchmark in one run, with its answers checked against float64 (for a lent H200).

``python -m benchmarks.device_all --out benchmarks/results`` on a machine with an accelerator runs,
in order, each within its own time budget (the whole within 8 minutes on an H200):

1. ``device``: the machine's limits, measured in the run: copy bandwidth (a jitted ``x + 1``) and
   the matmul rate at each precision (square products as ``cka_matrix`` runs them), with a float32
   product checked against float64 NumPy.
2. ``agreement``: 1,355 models x 50,000 stimuli x 1,000 categories, predictions made on the device
   (accuracies spread 0.4-0.9, wrong answers uniform over the other categories). Times
   ``agreement_stats`` + per-stimulus agreement + Fleiss' kappa (and the dense count table, and 10
   accuracy-bin subsets in one call) against the memory floor (bytes of predictions / copy
   bandwidth); checks kappa and every stimulus's agreement against a float64 NumPy reference,
   streamed over stimulus chunks so the host never holds the whole prediction table.
3. ``cka``: all-pairs CKA at 100, 250, 500 and 1,000 models x 2,000 stimuli x 768 dims (features
   made on the device as in ``device_cka``) at each ``matmul_precision`` (float32, tensorfloat32,
   bfloat16): time, FLOPs of the chosen path and their share of the measured matmul rate at that
   precision, the device's peak memory, and each precision's largest error against float64 NumPy on
   8 of the models (their entries of the whole matrix).
4. ``extract``: images/s of a ViT-B/16 and a ResNet-50 (Hugging Face Flax classes built from their
   default configs with random weights, no download) at 224 x 224, batch 256, a jitted forward on
   batches made on the device, at each precision (float32 and tensorfloat32 through
   ``jax.default_matmul_precision``, bfloat16 as the model's computation dtype), with model FLOP
   utilisation (FLOPs per image from XLA's cost analysis x images/s / the matmul rate at that
   precision) and the logits' error against the same model in float64 on the host CPU.

A section that raises is recorded with its error and the next one still runs; a check beyond its
tolerance marks its section failed. Within a section a case whose estimated time would overrun the
budget is skipped and listed. One markdown and one JSON file, named with the device kind and date,
are written to ``--out``; the exit status is 1 unless every section passed its checks.

``--quick`` runs the same code at tiny sizes on any machine (the tests run it on the CPU); it writes
files only where ``--out`` is given, with ``-quick`` in their names. ``device_cka.py`` and
``device_extract.py`` remain for their own tables (CKA at 10,000 stimuli; the extraction engine).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import re
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxagree as ja

try:
    from benchmarks.common import copy_bandwidth, machine, markdown_table, timed
    from benchmarks.device_cka import cka_reference, device_features, matmul_rates, peak_bytes
except ImportError:  # run as a script from the benchmarks folder
    from common import copy_bandwidth, machine, markdown_table, timed
    from device_cka import cka_reference, device_features, matmul_rates, peak_bytes

PRECISIONS = ("float32", "tensorfloat32", "bfloat16")
SECTIONS = ("device", "agreement", "cka", "extract")
# Seconds per section on the H200 (the whole run must end within TOTAL_S, start-up included).
BUDGET_S = {"device": 30, "agreement": 90, "cka": 120, "extract": 210}
TOTAL_S = 480

# Tolerances of the float64 checks. Reduced precisions get bounds well above what they gave on
# the CPU at full size (CKA at 2,000 x 768: bfloat16 5e-6; logits: bfloat16 ViT-B/16 4e-3,
# ResNet-50 9e-3), so that only a broken kernel exceeds them: their errors are what the tables report.
MATMUL_TOLERANCE = 1e-5  # float32 product, relative to the largest entry
KAPPA_TOLERANCE = 1e-5
AGREEMENT_TOLERANCE = 1e-6
CKA_TOLERANCE = {"float32": 1e-4, "tensorfloat32": 1e-3, "bfloat16": 1e-2}
LOGITS_TOLERANCE = {"float32": 1e-3, "tensorfloat32": 2e-2, "bfloat16": 5e-2}  # relative to max |logit|
# Published forward FLOPs per image at 224 x 224 (2 x multiply-adds): ViT-B/16 17.6 GMACs
# (Dosovitskiy et al. 2021, table 6 as counted by fvcore), ResNet-50 4.1 GMACs (He et al. 2016).
PUBLISHED_GFLOPS = {"ViT-B/16": 35.1, "ResNet-50": 8.2}


class Sizes(NamedTuple):
    agreement: tuple[int, int, int]  # models, stimuli, categories
    cka_models: tuple[int, ...]
    cka_shape: tuple[int, int]  # stimuli, dims
    cka_check_models: int
    cka_repeats: int
    matmul: int  # square size for the matmul rate
    bandwidth_bytes: int
    image: int
    batch: int
    extract_seconds: float  # time each extraction case runs for, about
    extract_precisions: tuple[str, ...]
    tiny_models: bool  # tiny ViT and ResNet configs at 32 x 32 instead of ViT-B/16 and ResNet-50


FULL = Sizes((1355, 50_000, 1000), (100, 250, 500, 1000), (2000, 768), 8, 3, 8192, 1 << 30, 224, 256, 3.0,
             PRECISIONS, False)
# On a CPU tensorfloat32 is float32: the dry run compiles the two code paths (precision context, dtype).
QUICK = Sizes((30, 1_000, 50), (4, 6), (64, 16), 4, 1, 256, 1 << 22, 32, 4, 0.0, ("float32", "bfloat16"), True)


def check(section: dict, name: str, value: float, limit: float) -> bool:
    """Record a check in ``section["checks"]``: passed when ``value`` is finite and at most
    ``limit``. Returns whether it passed; a failed check marks the section failed."""
    value = float(value)
    passed = bool(math.isfinite(value) and value <= limit)
    section["checks"].append({"check": name, "value": value, "limit": limit, "passed": passed})
    print(f"    check {name}: {value:.2e} <= {limit:.0e} {'ok' if passed else 'FAILED'}", flush=True)
    return passed


class Context:
    """What the sections share: sizes, the clock, and the device's limits once measured."""

    def __init__(self, sizes: Sizes, quick: bool, total_s: float):
        self.sizes, self.quick = sizes, quick
        self.start = time.perf_counter()
        self.deadline = self.start + total_s
        self.section_end = self.deadline
        self.bandwidth = float("nan")
        self.rates = {p: float("nan") for p in PRECISIONS}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left to the running section (its budget, within the whole run's)."""
        return self.section_end - time.perf_counter()

    def log(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {message}", flush=True)


def run_section(name: str, fn, ctx: Context, budget_s: float) -> dict:
    section = {"name": name, "budget_s": budget_s, "checks": [], "rows": [], "skipped": [], "notes": []}
    start = time.perf_counter()
    ctx.section_end = min(start + budget_s, ctx.deadline)
    ctx.log(f"{name}: start (budget {budget_s:.0f} s, {ctx.deadline - start:.0f} s left in all)")
    try:
        if ctx.deadline - start <= 0:
            raise TimeoutError("no time left in the run's budget")
        fn(ctx, section)
    except Exception as error:  # noqa: BLE001 - recorded; the next section still runs
        section["status"] = "error"
        section["error"] = f"{type(error).__name__}: {error}"
        section["traceback"] = traceback.format_exc()
        print(section["traceback"], file=sys.stderr, flush=True)
    else:
        checks = section["checks"]
        section["status"] = "ok" if checks and all(c["passed"] for c in checks) else (
            "failed" if checks else "unchecked")
    section["seconds"] = time.perf_counter() - start
    ctx.log(f"{name}: {section['status']} in {section['seconds']:.1f} s")
    gc.collect()
    return section


# 1. The device's limits ----------------------------------------------------------------------


def device_section(ctx: Context, section: dict) -> None:
    sizes = ctx.sizes
    size = 512
    a = jax.random.normal(jax.random.key(7), (size, size))
    got = np.asarray(ja.cka.plan.matmul(a, a, "float32"), np.float64)
    host = np.asarray(a, np.float64)
    expected = host @ host
    check(section, "float32 matmul vs float64 (relative)", np.abs(got - expected).max() / np.abs(expected).max(),
          MATMUL_TOLERANCE)
    ctx.bandwidth = copy_bandwidth(sizes.bandwidth_bytes)
    ctx.log(f"  copy bandwidth {ctx.bandwidth / 1e9:.1f} GB/s (read + write)")
    ctx.rates = matmul_rates(sizes.matmul)
    ctx.log("  matmul TFLOP/s " + ", ".join(f"{p} {r / 1e12:.1f}" for p, r in ctx.rates.items()))
    stats = jax.devices()[0].memory_stats() or {}
    section["rows"] = [{"what": "copy bandwidth (read + write)", "value": ctx.bandwidth / 1e9, "unit": "GB/s"}] + [
        {"what": f"matmul rate, {p} (square {sizes.matmul} products)", "value": r / 1e12, "unit": "TFLOP/s"}
        for p, r in ctx.rates.items()
    ] + [{"what": "device memory limit", "value": stats.get("bytes_limit", float("nan")) / 1e9, "unit": "GB"}]


DEVICE_COLUMNS = [("what", "limit", "s"), ("value", "measured", ".4g"), ("unit", "unit", "s")]


# 2. Agreement -----------------------------------------------------------------------------------


@partial(jax.jit, static_argnums=(1, 2, 3))
def device_predictions(key, num_models: int, num_stimuli: int, num_categories: int):
    """``int32 [models, stimuli]`` made on the device: model m answers right with probability
    ``accuracy[m]`` (uniform in 0.4-0.9), else a category drawn uniformly from the other ones."""
    label_key, accuracy_key, right_key, wrong_key = jax.random.split(key, 4)
    labels = jax.random.randint(label_key, (num_stimuli,), 0, num_categories)
    accuracy = jax.random.uniform(accuracy_key, (num_models,), minval=0.4, maxval=0.9)
    right = jax.random.uniform(right_key, (num_models, num_stimuli)) < accuracy[:, None]
    wrong = (labels + jax.random.randint(wrong_key, (num_models, num_stimuli), 1, num_categories)) % num_categories
    return jnp.where(right, labels, wrong).astype(jnp.int32), accuracy


def agreement_reference(preds: jax.Array, num_categories: int, *, chunk_values: int = 1 << 22):
    """(per-stimulus agreement, Fleiss' kappa) in float64 NumPy, from a count table built one
    stimulus chunk at a time (about ``chunk_values`` predictions on the host at once). Every
    model answers every stimulus (no ``-1``), as :func:`device_predictions` makes them."""
    num_models, num_stimuli = preds.shape
    chunk = max(1, chunk_values // num_models)
    agreement = np.empty(num_stimuli)
    totals = np.zeros(num_categories)
    for start in range(0, num_stimuli, chunk):
        host = np.asarray(preds[:, start : start + chunk]).astype(np.int64)
        if host.min() < 0 or host.max() >= num_categories:
            raise ValueError(f"predictions outside [0, {num_categories}) in stimuli {start}-{start + chunk}")
        width = host.shape[1]
        cells = (host + num_categories * np.arange(width)).ravel()
        counts = np.bincount(cells, minlength=width * num_categories).reshape(width, num_categories).astype(np.float64)
        n = counts.sum(1)
        agreement[start : start + width] = ((counts**2).sum(1) - n) / (n * (n - 1))
        totals += counts.sum(0)
    p = totals / totals.sum()
    chance = (p**2).sum()
    return agreement, (agreement.mean() - chance) / (1 - chance)


def agreement_section(ctx: Context, section: dict) -> None:
    num_models, num_stimuli, num_categories = ctx.sizes.agreement
    repeats = 2 if ctx.quick else 5
    preds, accuracy = device_predictions(jax.random.key(0), num_models, num_stimuli, num_categories)
    preds.block_until_ready()
    ctx.log(f"  {num_models} x {num_stimuli:,} predictions made on the device ({preds.nbytes / 1e6:.0f} MB)")
    bins = ja.accuracy_bins(np.asarray(accuracy), num_bins=10).model_mask

    def fast():
        stats = ja.agreement_stats(preds, num_categories=num_categories)
        return ja.per_stimulus_agreement(stats), ja.fleiss_kappa(stats)

    def dense():
        counts = ja.count_predictions(preds, num_categories=num_categories)
        return ja.per_stimulus_agreement(counts), ja.fleiss_kappa(counts)

    def ten_bins():
        stats = ja.agreement_stats(preds, num_categories=num_categories, model_mask=bins)
        return ja.per_stimulus_agreement(stats), ja.fleiss_kappa(stats)

    row = {"case": f"{num_models:,} x {num_stimuli:,} x {num_categories:,}", "preds_mb": preds.nbytes / 1e6}
    first, row["fast_s"] = timed(fast, repeats=repeats)
    row["compile_s"] = max(first - row["fast_s"], 0.0)
    _, row["dense_s"] = timed(dense, repeats=repeats)
    _, row["bins10_s"] = timed(ten_bins, repeats=repeats)
    row["floor_s"] = preds.nbytes / ctx.bandwidth
    row["x_floor"] = row["fast_s"] / row["floor_s"]
    ctx.log(f"  timed: stats {row['fast_s'] * 1e3:.2f} ms, dense {row['dense_s'] * 1e3:.2f} ms, "
            f"10 bins {row['bins10_s'] * 1e3:.2f} ms, floor {row['floor_s'] * 1e3:.3f} ms")

    start = time.perf_counter()
    expected_agreement, expected_kappa = agreement_reference(preds, num_categories)
    row["reference_s"] = time.perf_counter() - start
    row["kappa"] = float(expected_kappa)
    for name, (agreement, kappa) in (("agreement_stats", fast()), ("count_predictions", dense())):
        check(section, f"{name}: kappa vs float64", abs(float(kappa) - expected_kappa), KAPPA_TOLERANCE)
        check(section, f"{name}: per-stimulus agreement vs float64 (all {num_stimuli:,})",
              np.abs(np.asarray(agreement, np.float64) - expected_agreement).max(), AGREEMENT_TOLERANCE)
    section["rows"].append(row)
    section["notes"].append(
        f"Memory floor = bytes of int32 predictions / copy bandwidth measured in the run "
        f"({ctx.bandwidth / 1e9:.0f} GB/s). Times: best of {repeats} after a warm-up; compile = first call minus "
        "best. The float64 reference counts every stimulus on the host, streamed in chunks.")


AGREEMENT_COLUMNS = [
    ("case", "models x stimuli x categories", "s"), ("fast_s", "stats + agreement + kappa (s)", ".4f"),
    ("dense_s", "dense counts (s)", ".4f"), ("bins10_s", "10 bins, one call (s)", ".4f"),
    ("floor_s", "memory floor (s)", ".5f"), ("x_floor", "x floor", ".1f"), ("compile_s", "compile (s)", ".2f"),
    ("kappa", "kappa (float64)", ".4f"), ("reference_s", "float64 reference (s)", ".1f"),
]


# 3. CKA -----------------------------------------------------------------------------------------


def cka_section(ctx: Context, section: dict) -> None:
    sizes = ctx.sizes
    num_stimuli, dim = sizes.cka_shape
    previous = None  # (models, compile seconds, compute seconds) of the last case
    for num_models in sizes.cka_models:
        if previous is not None:
            models, compile_s, compute_s = previous
            estimate = compile_s + compute_s * (num_models / models) ** 2
            if estimate > ctx.left():
                section["skipped"].append(f"{num_models} models: estimated {estimate:.0f} s, {ctx.left():.0f} s left")
                ctx.log(f"  skip {num_models} models (estimated {estimate:.0f} s, {ctx.left():.0f} s left)")
                continue
        case_start = time.perf_counter()
        features = device_features(jax.random.key(num_models), num_models, num_stimuli, dim)
        sample = np.unique(np.linspace(0, num_models - 1, min(sizes.cka_check_models, num_models)).astype(int))
        expected = cka_reference(np.asarray(features[sample]))
        path = ja.cka.plan.choose_path([dim] * num_models, num_stimuli, ja.cka.plan.default_max_bytes(), "auto")
        compile_total = 0.0
        last = None  # seconds the previous precision took
        for precision in PRECISIONS:
            if last is not None and last > ctx.left():
                section["skipped"].append(f"{num_models} models {precision}: about {last:.0f} s, "
                                          f"{ctx.left():.0f} s left")
                ctx.log(f"  skip {num_models} models {precision}")
                continue
            precision_start = time.perf_counter()
            run = partial(ja.cka_matrix, features, matmul_precision=precision)
            first, best = timed(run, repeats=sizes.cka_repeats)
            compile_total += max(first - best, 0.0)
            got = np.asarray(run(), np.float64)[np.ix_(sample, sample)]
            error = float(np.abs(got - expected).max())
            check(section, f"{num_models} models, {precision}: max abs CKA error vs float64 on {len(sample)} models",
                  error, CKA_TOLERANCE[precision])
            row = {
                "case": f"{num_models:,} x {num_stimuli:,} x {dim}", "precision": precision, "path": path.name,
                "seconds": best, "compile_s": max(first - best, 0.0), "tflop": path.flops / 1e12,
                "tflops": path.flops / best / 1e12,
                "share": path.flops / best / ctx.rates[precision], "error": error,
                "peak_gb": peak_bytes() / 1e9, "features_gb": features.nbytes / 1e9,
            }
            section["rows"].append(row)
            ctx.log(f"  {row['case']} {precision}: {best:.4f} s, {row['tflops']:.3g} TFLOP/s "
                    f"({row['share']:.0%} of the matmul rate), error {error:.1e}")
            last = time.perf_counter() - precision_start
        del features
        previous = (num_models, compile_total, time.perf_counter() - case_start - compile_total)
    section["notes"].append(
        f"Features made on the device (random projections of shared latents, two families). Error: the largest "
        f"difference from float64 NumPy over the entries of {sizes.cka_check_models} models spread over the "
        "matrix. Share: FLOPs of the path jaxagree chose / time / the matmul rate at that precision measured in "
        "the run. Peak memory is the process's running peak (cases run smallest first).")


CKA_COLUMNS = [
    ("case", "models x stimuli x dims", "s"), ("precision", "matmul precision", "s"), ("path", "path", "s"),
    ("seconds", "time (s)", ".4f"), ("tflop", "TFLOP of the path", ".3g"), ("tflops", "TFLOP/s of the path", ".3g"),
    ("share", "share of the matmul rate", ".0%"), ("error", "max error vs float64", ".1e"),
    ("features_gb", "features (GB)", ".2f"), ("peak_gb", "device peak memory (GB)", ".2f"),
    ("compile_s", "compile (s)", ".2f"),
]


# 4. Extraction ----------------------------------------------------------------------------------


def model_class_and_config(name: str, tiny: bool):
    """The Hugging Face Flax class and config (random weights; the default configs are the
    ViT-B/16 and ResNet-50 of the checkpoints users load; ``tiny``: small ones at 32 x 32)."""
    import transformers as tf

    if not hasattr(tf, "FlaxViTForImageClassification"):
        raise RuntimeError(f"transformers {tf.__version__} has no Flax models (5.x dropped them): install 4.57.x "
                           "(on a lent GPU carry it as wheels, see benchmarks/README.md)")
    if name == "ViT-B/16":
        config = tf.ViTConfig(num_labels=1000) if not tiny else tf.ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=10)
        return tf.FlaxViTForImageClassification, config
    if name == "ResNet-50":
        config = tf.ResNetConfig(num_labels=1000) if not tiny else tf.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10)
        return tf.FlaxResNetForImageClassification, config
    raise ValueError(f"unknown model {name!r}")


def float64_logits(cls, config, params, images: np.ndarray) -> np.ndarray:
    """The model's logits in float64 on the host CPU (x64 enabled only here)."""
    cpu = jax.devices("cpu")[0]
    enable_x64 = getattr(jax, "enable_x64", None)
    if enable_x64 is None:  # older jax
        from jax.experimental import enable_x64
    with enable_x64(True), jax.default_device(cpu):
        model = cls(config, _do_init=False, dtype=jnp.float64)
        params64 = jax.tree.map(lambda p: jax.device_put(np.asarray(p, np.float64), cpu), params)
        x64 = jax.device_put(np.asarray(images, np.float64), cpu)
        return np.asarray(jax.jit(lambda p, x: model(x, params=p).logits)(params64, x64))


def lowered_flops(lowered, compiled) -> float:
    """FLOPs of one call from XLA's cost analysis (of the lowered HLO, else of the compiled one)."""
    for source in (lowered, compiled):
        try:
            cost = source.cost_analysis()
        except Exception:  # noqa: BLE001 - not every backend reports it
            continue
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float((cost or {}).get("flops", float("nan")))
        if math.isfinite(flops) and flops > 0:
            return flops
    return float("nan")


def extract_section(ctx: Context, section: dict) -> None:
    sizes = ctx.sizes
    batch, size = sizes.batch, sizes.image
    names = ("ViT-B/16", "ResNet-50")
    for index, name in enumerate(names):
        case_start = time.perf_counter()
        # Leave the later models a fair share of what is left.
        model_end = time.perf_counter() + ctx.left() / (len(names) - index)
        cls, config = model_class_and_config(name, sizes.tiny_models)
        model = cls(config, _do_init=False)
        params = jax.jit(model.init_weights, static_argnums=1)(jax.random.key(index), (1, size, size, 3))
        images = jax.random.normal(jax.random.key(100 + index), (batch, 3, size, size))  # NCHW, normalised
        check_count = min(2, batch)
        expected = float64_logits(cls, config, params, np.asarray(images[:check_count]))
        ctx.log(f"  {name}: built and float64 reference in {time.perf_counter() - case_start:.1f} s")
        last = None
        for precision in sizes.extract_precisions:
            if last is not None and last > model_end - time.perf_counter():
                section["skipped"].append(f"{name} {precision}: about {last:.0f} s, "
                                          f"{model_end - time.perf_counter():.0f} s left for this model")
                ctx.log(f"  skip {name} {precision}")
                continue
            start = time.perf_counter()
            run_model = model if precision != "bfloat16" else cls(config, _do_init=False, dtype=jnp.bfloat16)
            forward = jax.jit(lambda p, x, m=run_model: m(x, params=p).logits)
            with jax.default_matmul_precision("float32" if precision == "bfloat16" else precision):
                lowered = forward.lower(params, images)
                compiled = lowered.compile()
            compile_s = time.perf_counter() - start
            logits = compiled(params, images).block_until_ready()
            error = float(np.abs(np.asarray(logits[:check_count], np.float64) - expected).max()
                          / np.abs(expected).max())
            check(section, f"{name} {precision}: logits vs float64 (relative to the largest abs logit)", error,
                  LOGITS_TOLERANCE[precision])
            start_one = time.perf_counter()
            compiled(params, images).block_until_ready()
            one = time.perf_counter() - start_one
            iterations = max(2, min(50, math.ceil(sizes.extract_seconds / max(one, 1e-9))))
            start_loop = time.perf_counter()
            for _ in range(iterations):
                logits = compiled(params, images)
            logits.block_until_ready()
            seconds = time.perf_counter() - start_loop
            flops = lowered_flops(lowered, compiled) / batch
            ips = batch * iterations / seconds
            row = {
                "model": name, "config": "tiny" if sizes.tiny_models else "default", "precision": precision,
                "batch": batch, "images": batch * iterations, "ips": ips, "gflops_per_image": flops / 1e9,
                "published_gflops": None if sizes.tiny_models else PUBLISHED_GFLOPS[name],
                "mfu": flops * ips / ctx.rates[precision], "error": error, "compile_s": compile_s,
            }
            section["rows"].append(row)
            ctx.log(f"  {name} {precision}: {ips:.0f} images/s, {row['gflops_per_image']:.2f} GFLOP/image, "
                    f"MFU {row['mfu']:.0%}, error {error:.1e}")
            last = time.perf_counter() - start
        del params, images
    section["notes"].append(
        f"Random weights (Hugging Face Flax classes, {'tiny' if sizes.tiny_models else 'default'} configs), "
        f"{size} x {size} inputs made on the device, "
        f"batch {batch}, a jitted forward (logits). float32 and tensorfloat32 set jax.default_matmul_precision; "
        "bfloat16 builds the model with dtype=bfloat16 (weights stay float32). GFLOP per image from XLA's cost "
        "analysis of the forward (published counts beside it, at 224 x 224); MFU = that x images/s / the matmul "
        "rate at the same precision measured in the run. Error: logits of the first images against the same "
        "weights in float64 on the host CPU, relative to the largest absolute logit.")


EXTRACT_COLUMNS = [
    ("model", "model (random weights)", "s"), ("config", "config", "s"), ("precision", "precision", "s"),
    ("batch", "batch", "d"),
    ("images", "images timed", "d"), ("ips", "images/s", ".4g"), ("gflops_per_image", "GFLOP per image (XLA)", ".3g"),
    ("published_gflops", "published GFLOP (224 px)", ".1f"), ("mfu", "model FLOP utilisation", ".1%"),
    ("error", "logits error vs float64", ".1e"), ("compile_s", "compile (s)", ".1f"),
]


# The run ------------------------------------------------------------------------------------------

SECTION_FUNCTIONS = {"device": device_section, "agreement": agreement_section, "cka": cka_section,
                     "extract": extract_section}
SECTION_COLUMNS = {"device": DEVICE_COLUMNS, "agreement": AGREEMENT_COLUMNS, "cka": CKA_COLUMNS,
                   "extract": EXTRACT_COLUMNS}


def device_slug(kind: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", kind).strip("-") or "device"


def render(result: dict) -> str:
    info = result["machine"]
    lines = [f"# All device benchmarks on {info['device']}{' (quick)' if result['quick'] else ''}", "",
             " · ".join(f"{k}: {v}" for k, v in info.items()), "",
             f"Total {result['seconds']:.1f} s (budget {result['budget_s']} s). Status: "
             + ", ".join(f"{s['name']} {s['status']}" for s in result["sections"]) + ".", ""]
    for section in result["sections"]:
        lines += [f"## {section['name']}: {section['status']} "
                  f"({section['seconds']:.1f} s of {section['budget_s']} s)", ""]
        if section["rows"]:
            lines += [markdown_table(section["rows"], SECTION_COLUMNS[section["name"]]), ""]
        if section["checks"]:
            checks = [{**c, "passed": "yes" if c["passed"] else "NO"} for c in section["checks"]]
            lines += [markdown_table(checks, [("check", "check", "s"), ("value", "value", ".2e"),
                                              ("limit", "limit", ".0e"), ("passed", "passed", "s")]), ""]
        lines += [f"Skipped for the time budget: {item}." for item in section["skipped"]]
        if section.get("error"):
            lines += ["Error:", "", "```", section["traceback"].rstrip(), "```"]
        lines += section["notes"] + [""]
    return "\n".join(lines)


def plain(value):
    """``value`` as strict JSON: NumPy scalars as numbers, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write(result: dict, out: Path) -> tuple[Path, Path]:
    info = result["machine"]
    stem = f"all-{device_slug(info['device'])}-{info['date']}{'-quick' if result['quick'] else ''}"
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(plain(result), indent=2, allow_nan=False) + "\n")
    md_path.write_text(render(result))
    return json_path, md_path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (runs anywhere, CPU included)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the result files (default benchmarks/results; --quick writes only here)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--total-s", type=float, default=TOTAL_S, help="the whole run's time budget (s)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    out = args.out if args.out is not None or args.quick else Path(__file__).parent / "results"

    ctx = Context(QUICK if args.quick else FULL, args.quick, args.total_s)
    info = machine()
    info["date"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d")
    ctx.log(f"device: {info['device']} ({info['backend']}, {info['num_devices']} device(s)), jax {info['jax']}")
    sections = [run_section(name, SECTION_FUNCTIONS[name], ctx, BUDGET_S[name]) for name in SECTIONS
                if name in chosen]
    result = {"machine": info, "quick": args.quick, "budget_s": args.total_s, "seconds": ctx.elapsed(),
              "sizes": ctx.sizes._asdict(),
              "device_limits": {"copy_bandwidth": ctx.bandwidth, "matmul_rates": ctx.rates},
              "sections": sections, "ok": all(s["status"] == "ok" for s in sections)}
    if out is not None:
        for path in write(result, out):
            ctx.log(f"wrote {path}")
    ctx.log("all sections passed their checks" if result["ok"] else
            "NOT all sections passed: " + ", ".join(f"{s['name']} {s['status']}" for s in sections))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
