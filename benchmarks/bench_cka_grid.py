"""All-pairs linear CKA over a grid of sizes, against NumPy stacked Grams, both run as a user runs them.

Issue 15's "CKA at every size": models {10, 50, 200, 500} x stimuli {500, 2,000, 8,000} x dims
{64, 512, 2,048}. For each size, in a fresh process whose environment lacks this machine's
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (``common.run_as_user``: jaxagree and the peer both
run as a user runs them, in that one process):

* jaxagree ``cka_matrix`` (biased) on the path it chooses, and on the other path
  (``method="gram"`` / ``"features"``, FLOPs from ``jaxagree.cka.plan.choose_path``) where that
  path's FLOPs fit the time budget;
* the peer: float32 NumPy stacked Grams (``bench_cka.numpy_stacked_gram``), the fastest known CPU
  method;
* the float32 matmul rate of that process, both NumPy's (OpenBLAS sgemm) and XLA's (a jitted
  ``jnp.dot``), on 2,048 x 2,048; the share of matmul rate is the path's FLOPs / its time / the
  better of the two (OpenBLAS's sgemm on this CPU);
* peak resident memory of the process during each call (the high-water mark reset before it;
  the whole process: Python, XLA, the features and their device copy included);
* the answers: the largest difference from the peer; beyond ``bench_cka.CKA_TOLERANCE`` the run
  fails.

jaxagree and the peer alternate (round after round, a short pause between them) and each time is
the best of its rounds, so that load from other processes on this shared machine falls on both.
Sizes whose peer would need more than ``PEER_SECONDS`` or ``MAX_GB`` are timed for jaxagree only
(the peer cell says why); sizes whose features alone exceed ``MAX_FEATURES_GB`` are listed as
skipped.

Usage: ``python benchmarks/bench_cka_grid.py [--quick] [--no-save] [--rerun M,n,d ...]``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

try:
    from benchmarks.bench_cka import CKA_TOLERANCE, make_features, numpy_stacked_gram
    from benchmarks.common import BLAS_VARIABLES, RESULTS, parse_args, publish, run_as_user
except ImportError:  # run as a script from the benchmarks folder, or imported by run_as_user
    from bench_cka import CKA_TOLERANCE, make_features, numpy_stacked_gram
    from common import BLAS_VARIABLES, RESULTS, parse_args, publish, run_as_user

MODELS, STIMULI, DIMS = (10, 50, 200, 500), (500, 2000, 8000), (64, 512, 2048)
QUICK_GRID = [(4, 100, 16), (6, 300, 128)]
NOMINAL_RATE = 100e9  # FLOP/s assumed when deciding what fits (this shared 2-core machine, loaded)
PEER_SECONDS = 60.0  # the peer is skipped above this estimate
OTHER_SECONDS = 10.0  # the path jaxagree did not choose is skipped above this estimate
JAX_ONLY_SECONDS = 20.0  # a size whose peer cannot run is timed for jaxagree alone below this estimate
MAX_GB = 10.0  # the peer's features + stacked Grams, or jaxagree's features x 3, above this: skipped
MAX_FEATURES_GB = 4.0
PAUSE_S = 0.3  # between jaxagree and the peer: OpenBLAS and XLA threads spin a while after a call
MATMUL_SIZE = 2048
REFERENCE_MODELS = 4  # models whose pairs are checked against float64


def peer_flops(models: int, stimuli: int, dims: int) -> float:
    """Stacked Grams: every whole Gram, then one product of the stacked Grams."""
    return 2.0 * models * stimuli**2 * dims + 2.0 * models**2 * stimuli**2


def path_flops(path, models: int, stimuli: int, dims: int) -> float:
    """FLOPs the path performs: the Gram path's count in ``plan`` (half of each Gram and of the
    products); for the feature path, ``2 n w_i w_j`` for every tile ``i <= j`` of the groups of
    models side by side (``plan`` counts ``n D^2``; a diagonal tile is computed whole)."""
    if path.name == "gram":
        return path.flops
    per_group = max(1, path.block // dims)
    widths = [min(per_group, models - start) * dims for start in range(0, models, per_group)]
    return float(sum(2.0 * stimuli * widths[i] * widths[j] for i in range(len(widths)) for j in range(i, len(widths))))


def plan_size(models: int, stimuli: int, dims: int, quick: bool) -> dict:
    """What to run at this size, and why not the rest."""
    from jaxagree.cka import plan

    features_gb = models * stimuli * dims * 4 / 1e9
    # The list of Grams and their stacked copy: 500 x 2,000 x 64 peaked at 16.9 GB (this table's run, when
    # only one copy was counted; a re-run now leaves NumPy out there).
    peer_gb = features_gb + 2 * models * stimuli**2 * 4 / 1e9
    out = {"features_gb": features_gb, "skip": None, "peer_skip": None, "other_skip": None}
    if features_gb > MAX_FEATURES_GB or 3 * features_gb > MAX_GB:
        out["skip"] = f"skipped: features alone {features_gb:.1f} GB (limit {MAX_FEATURES_GB:g} GB on 24 GB shared RAM)"
        return out
    max_bytes = plan.default_max_bytes()
    auto = plan.choose_path([dims] * models, stimuli, max_bytes, "auto")
    if peer_gb > MAX_GB and not quick:
        out["peer_skip"] = f"not run: needs {peer_gb:.0f} GB"
    elif peer_flops(models, stimuli, dims) / NOMINAL_RATE > PEER_SECONDS and not quick:
        out["peer_skip"] = f"not run: ~{peer_flops(models, stimuli, dims) / NOMINAL_RATE:.0f} s"
    if out["peer_skip"] and auto.flops / NOMINAL_RATE > JAX_ONLY_SECONDS:
        out["skip"] = (f"skipped: NumPy {out['peer_skip']}, and jaxagree alone ~{auto.flops / NOMINAL_RATE:.0f} s "
                       "(over this grid's time budget)")
        return out
    other = "features" if auto.name == "gram" else "gram"
    try:
        other_path = plan.choose_path([dims] * models, stimuli, max_bytes, other)
    except ValueError:
        out["other_skip"] = "does not fit"
    else:
        if other_path.flops / NOMINAL_RATE > OTHER_SECONDS and not quick:
            out["other_skip"] = f"~{other_path.flops / NOMINAL_RATE:.0f} s ({other_path.flops / 1e12:.0f} TFLOP)"
    return out


def _peak_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        pass


def _peak_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _matmul_rates(repeats: int = 5) -> tuple[float, float]:
    """(NumPy's, XLA's) float32 FLOP/s on one MATMUL_SIZE-square product, best of ``repeats``."""
    import jax
    import jax.numpy as jnp

    a = np.random.default_rng(0).standard_normal((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32)
    device = jnp.asarray(a)
    product = jax.jit(lambda x: x @ x)
    product(device).block_until_ready()
    a @ a
    best_np = best_xla = float("inf")
    for _ in range(repeats):  # alternated, as everything here
        start = time.perf_counter()
        a @ a
        best_np = min(best_np, time.perf_counter() - start)
        start = time.perf_counter()
        product(device).block_until_ready()
        best_xla = min(best_xla, time.perf_counter() - start)
    flops = 2.0 * MATMUL_SIZE**3
    return flops / best_np, flops / best_xla


def reference64(features: np.ndarray) -> np.ndarray:
    """Biased CKA of ``features`` in float64, by the cheaper of whole Grams and cross-products."""
    x = features.astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    num_models, n, d = x.shape
    if n * (num_models * d) ** 2 <= 2 * num_models * n * n * d:
        side = np.concatenate(list(x), axis=1)
        cross = side.T @ side
        inner = np.array([[np.sum(cross[a * d:(a + 1) * d, b * d:(b + 1) * d] ** 2) for b in range(num_models)]
                          for a in range(num_models)])
    else:
        grams = np.stack([(m @ m.T).ravel() for m in x])
        inner = grams @ grams.T
    scale = np.sqrt(np.diag(inner))
    return inner / scale[:, None] / scale[None, :]


def grid_case(models, stimuli, dims, rounds, run_peer, other) -> dict:
    """One size, in the process ``run_as_user`` starts: jaxagree's chosen path, ``other`` (a path
    name, or "" for none) and the peer (when ``run_peer``), alternated over ``rounds`` rounds."""
    import jax.numpy as jnp

    import jaxagree as ja
    from jaxagree.cka import plan

    models, stimuli, dims, rounds = int(models), int(stimuli), int(dims), int(rounds)
    other = str(other)
    load = [os.getloadavg()[0]]
    host = make_features(models, stimuli, dims)
    device = jnp.asarray(host)
    max_bytes = plan.default_max_bytes()
    auto = plan.choose_path([dims] * models, stimuli, max_bytes, "auto")
    calls = {"auto": lambda: ja.cka_matrix(device).block_until_ready()}
    if other:
        calls["other"] = lambda: ja.cka_matrix(device, method=other).block_until_ready()
    out = {}
    results = {}
    for name, call in calls.items():  # compile, and check the answer
        _peak_reset()
        start = time.perf_counter()
        results[name] = np.asarray(call())
        out[f"{name}_first_s"] = time.perf_counter() - start
        out[f"{name}_peak"] = _peak_bytes()
    if bool(run_peer):
        calls["peer"] = lambda: numpy_stacked_gram(host)
    rates_np, rates_xla = [], []
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        rate_np, rate_xla = _matmul_rates(3)
        rates_np.append(rate_np)
        rates_xla.append(rate_xla)
        for name, call in calls.items():
            time.sleep(PAUSE_S)
            _peak_reset()
            start = time.perf_counter()
            value = call()
            best[name] = min(best[name], time.perf_counter() - start)
            out[f"{name}_peak"] = max(out.get(f"{name}_peak", 0), _peak_bytes())
            if name == "peer":
                results["peer"] = value
            del value
        load.append(os.getloadavg()[0])
    for name, seconds in best.items():
        out[f"{name}_s"] = seconds
    sample = min(models, REFERENCE_MODELS)
    reference = reference64(host[:sample])
    for name, result in results.items():
        out[f"{name}_diff64"] = float(np.abs(result[:sample, :sample] - reference).max())
        if name != "peer" and "peer" in results:
            out[f"{name}_diff"] = float(np.abs(result - results["peer"]).max())
    out["auto_path"] = auto.name
    out["auto_flops"] = path_flops(auto, models, stimuli, dims)
    if other:
        out["other_flops"] = path_flops(plan.choose_path([dims] * models, stimuli, max_bytes, other), models, stimuli,
                                        dims)
    out["sgemm_rate"] = max(rates_np)
    out["xla_rate"] = max(rates_xla)
    out["load_min"], out["load_max"] = min(load), max(load)
    out["blas_variables_absent"] = all(key not in os.environ for key in BLAS_VARIABLES)
    return out


def check(row: dict) -> None:
    """Fail the run on a wrong answer: jaxagree against float64 on the pairs of the first
    ``REFERENCE_MODELS`` models, and against the peer on all pairs within ``CKA_TOLERANCE`` or,
    where the peer's own float32 error is larger (many stimuli), within twice that error."""
    if not row["diff64"] <= CKA_TOLERANCE:
        raise AssertionError(f"{row['size']}: CKA differs from float64 by {row['diff64']:.2e} (> {CKA_TOLERANCE})")
    if "max_abs_diff" in row:
        bound = max(CKA_TOLERANCE, 2 * row["peer_diff64"])
        if not row["max_abs_diff"] <= bound:
            raise AssertionError(f"{row['size']}: CKA differs from NumPy stacked Grams by "
                                 f"{row['max_abs_diff']:.2e} (> {bound:.1e})")


def reasons(row: dict) -> str:
    """Measured facts behind a size below 1.0x NumPy or below 60% of the matmul rate."""
    ratio, share = row.get("x_numpy"), row.get("share")
    low_ratio = ratio is not None and ratio < 1.0
    low_share = share is not None and share < 0.6
    if not (low_ratio or low_share):
        return ""
    parts = []
    if low_ratio:
        fraction = row["auto_flops"] / row["peer_flops"]
        pace = (row["auto_flops"] / row["jaxagree_s"]) / (row["peer_flops"] / row["numpy_s"])
        parts.append(f"the {row['path']} path does {fraction:.0%} of NumPy's FLOPs but ran them at {pace:.0%} of "
                     "NumPy's pace (NumPy's whole-Gram sgemm beats XLA's dot on the Gram blocks)")
    if row["xla_vs_sgemm"] < 0.9:
        parts.append(f"XLA's dot at 2048^2 ran at {row['xla_vs_sgemm']:.0%} of OpenBLAS sgemm in this process")
    floor = row["auto_flops"] / row["rate"]
    if row["jaxagree_s"] < 0.05:
        parts.append(f"small: {row['jaxagree_s'] * 1e3:.0f} ms against a FLOP floor of {floor * 1e3:.1f} ms "
                     "(per-call costs: dispatch, checks, host transfers)")
    if row.get("note"):
        parts.append(row["note"])
    return "; ".join(parts) if parts else "see notes"


# Profiled causes (see the notes under the table), by size.
NOTES: dict[tuple[int, int, int], str] = {}

PROFILED = (
    "Profiled (2026-12-03, each comparison in one process, alternated): the limit is XLA:CPU's dot. In each "
    "size's process XLA's jnp.dot on 2048x2048 ran at 48-88% of OpenBLAS's sgemm (AVX-512 kernels), and the "
    "Gram path's smaller products run below that: per-model row blocks of [~230, d] x [d, ~1,100-4,100] "
    "stimuli, then a [models, cells] x [cells, models] product (at 50 x 2,000 x 64 that product alone ran "
    "about 3.7x slower in XLA than the same product in NumPy). Measured, and not adopted because they gained "
    "nothing beyond noise or lost: whole Grams from one batched dot_general (1.1-2x slower, twice the FLOPs); "
    "a batched einsum over models instead of lax.map; 3 to 11 row blocks at 500-2,000 stimuli; cells laid "
    "out [cells, models] for the product; XLA's XNNPACK, YNNPACK and oneDNN dot flags. Adopted: Gram row "
    "blocks of at least 256 stimuli (plan.EFFICIENT_ROWS; the 8,000-stimulus sizes were re-run after it: "
    "10 x 8,000 x 2,048 went from 35.3 s, 0.58x NumPy, to 26.1 s, 0.97x), and a stacked input is prepared "
    "for the feature path in one call per group of models."
)


def rows_rerun_at(rows: list[dict]) -> str:
    return ", ".join(sorted({row["measured_utc"] for row in rows if "(re-run)" in row["size"]}))


def grid(quick: bool) -> list[tuple[int, int, int]]:
    return QUICK_GRID if quick else list(itertools.product(MODELS, STIMULI, DIMS))


def run_size(size, quick: bool) -> dict:
    models, stimuli, dims = size
    row = {"size": f"{models} x {stimuli:,} x {dims}", "models": models, "stimuli": stimuli, "dims": dims}
    decided = plan_size(models, stimuli, dims, quick)
    row["features_gb"] = decided["features_gb"]
    if decided["skip"]:
        row["why"] = decided["skip"]
        return row
    run_peer = decided["peer_skip"] is None
    from jaxagree.cka import plan

    auto = plan.choose_path([dims] * models, stimuli, plan.default_max_bytes(), "auto")
    other = "" if decided["other_skip"] else ("features" if auto.name == "gram" else "gram")
    estimate = peer_flops(models, stimuli, dims) / NOMINAL_RATE if run_peer else auto.flops / NOMINAL_RATE
    rounds = 2 if quick or estimate > 5 else 3
    out = run_as_user(grid_case, models=models, stimuli=stimuli, dims=dims, rounds=rounds,
                      run_peer=run_peer, other=other)
    out = {key: value.item() if hasattr(value, "item") else value for key, value in out.items()}
    assert out["blas_variables_absent"], "the case ran with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE set"
    rate = max(out["sgemm_rate"], out["xla_rate"])
    row.update(
        path=out["auto_path"], jaxagree_s=out["auto_s"], compile_s=max(out["auto_first_s"] - out["auto_s"], 0.0),
        auto_flops=out["auto_flops"], peer_flops=peer_flops(models, stimuli, dims), rate=rate,
        sgemm_rate=out["sgemm_rate"], xla_rate=out["xla_rate"], xla_vs_sgemm=out["xla_rate"] / out["sgemm_rate"],
        share=out["auto_flops"] / out["auto_s"] / rate, peak_gb=out["auto_peak"] / 1e9,
        load=f"{out['load_min']:.1f}-{out['load_max']:.1f}", rounds=rounds,
    )
    if other:
        row.update(other_path=other, other_s=out["other_s"], other_share=out["other_flops"] / out["other_s"] / rate,
                   other_peak_gb=out["other_peak"] / 1e9)
    else:
        row["other_path"] = f"{'features' if auto.name == 'gram' else 'gram'}: {decided['other_skip']}"
    row["diff64"] = max(out["auto_diff64"], out.get("other_diff64", 0.0))
    if run_peer:
        row.update(numpy_s=out["peer_s"], x_numpy=out["peer_s"] / out["auto_s"], peer_peak_gb=out["peer_peak"] / 1e9,
                   peer_share=row["peer_flops"] / out["peer_s"] / rate, max_abs_diff=out["auto_diff"],
                   peer_diff64=out["peer_diff64"])
        if other:
            row["other_x_numpy"] = out["peer_s"] / out["other_s"]
            row["max_abs_diff"] = max(row["max_abs_diff"], out["other_diff"])
    check(row)
    if not run_peer:
        row["peer_note"] = decided["peer_skip"]
    row["note"] = NOTES.get(size, "")
    row["why"] = reasons(row)
    return row


COLUMNS = [
    ("size", "models x stimuli x dims", "s"),
    ("path", "path chosen", "s"),
    ("jaxagree_s", "jaxagree (s)", ".3f"),
    ("numpy_s", "NumPy stacked Grams (s)", ".3f"),
    ("x_numpy", "vs NumPy", ".2f"),
    ("share", "% of matmul rate", ".0%"),
    ("other_path", "other path", "s"),
    ("other_s", "other path (s)", ".3f"),
    ("other_x_numpy", "other vs NumPy", ".2f"),
    ("other_share", "other % of matmul rate", ".0%"),
    ("peer_share", "NumPy % of matmul rate", ".0%"),
    ("peak_gb", "peak RSS jaxagree (GB)", ".2f"),
    ("peer_peak_gb", "peak RSS NumPy (GB)", ".2f"),
    ("features_gb", "features (GB)", ".2f"),
    ("max_abs_diff", "max abs diff vs NumPy", ".1e"),
    ("diff64", "jaxagree vs float64", ".1e"),
    ("peer_diff64", "NumPy vs float64", ".1e"),
    ("load", "load avg (1 min)", "s"),
    ("why", "why (below 1.0x or 60%)", "s"),
]


def main(argv=None) -> str:
    """``--rerun M,n,d ...``: measure those sizes again and put them in place of theirs in the
    newest saved grid (rows marked re-run, with the time), keeping the other rows."""
    argv = list(sys.argv[1:] if argv is None else argv)
    render = "--render" in argv  # only the saved rows again, their reasons recomputed
    argv = [a for a in argv if a != "--render"]
    rerun = []
    if "--rerun" in argv:
        at = argv.index("--rerun")
        rerun = [tuple(int(v) for v in spec.split(",")) for spec in argv[at + 1:] if not spec.startswith("--")]
        argv = argv[:at] + [spec for spec in argv[at + 1:] if spec.startswith("--")]
    args = parse_args(argv, __doc__.splitlines()[0])
    started = time.perf_counter()
    previous = {}
    if rerun or render:
        saved = sorted(RESULTS.glob("cka-grid-*.json"))[-1]
        previous = {(r["models"], r["stimuli"], r["dims"]): r for r in json.loads(saved.read_text())["rows"]}
    rows = []
    for size in (list(previous) if rerun or render else grid(args.quick)):
        if (rerun or render) and size not in rerun:
            row = previous[size]
            if "x_numpy" in row or "share" in row:
                row["why"] = reasons(row)
            rows.append(row)
            continue
        row = run_size(size, args.quick)
        row["measured_utc"] = time.strftime("%H:%M", time.gmtime())
        if rerun:
            row["size"] += " (re-run)"
        rows.append(row)
        print(f"  {row['size']}: {row.get('jaxagree_s', float('nan')):.3f} s, vs NumPy "
              f"{row.get('x_numpy', float('nan')):.2f}, {row.get('share', float('nan')):.0%} of matmul rate; "
              f"{row.get('why', '')}", flush=True)
    minutes = (time.perf_counter() - started) / 60
    if rerun or render:
        minutes = next(iter(previous.values())).get("grid_min", float("nan"))
    for row in rows:
        row["grid_min"] = minutes
    columns = [("numpy_text", "NumPy stacked Grams (s)", "s") if key == "numpy_s" else (key, heading, fmt)
               for key, heading, fmt in COLUMNS]
    table_rows = [dict(row, numpy_text=f"{row['numpy_s']:.3f}" if "numpy_s" in row else row.get("peer_note"))
                  for row in rows]
    rates = [row["rate"] for row in rows if "rate" in row]
    notes = (
        f"\n\nEnvironment: every size ran in its own fresh process (common.run_as_user) whose environment has "
        f"{' and '.join(BLAS_VARIABLES)} removed: jaxagree and NumPy both as a user runs them, alternated round "
        "after round in that process (best of 2-3 rounds each). Matmul rate (the denominator) = the better of "
        f"NumPy's sgemm and XLA's jnp.dot on float32 {MATMUL_SIZE}x{MATMUL_SIZE}, measured in the same process "
        f"between rounds (best of them): {min(rates, default=0) / 1e9:.0f}-{max(rates, default=0) / 1e9:.0f} GFLOP/s "
        "over the sizes. jaxagree's FLOPs are those of the path it ran (Gram path: half of each Gram and of the "
        "products, by symmetry; feature path: 2 n w_i w_j for each tile i <= j of models side by side, a diagonal "
        "tile whole: 2 n D^2 when all D columns fit one tile); NumPy's are 2 M n^2 d + 2 M^2 n^2 (whole Grams). "
        "Peak RSS: "
        "the high-water mark of the whole process during that call (reset before it), so it includes Python, "
        "XLA, the host features and their device copy. Biased CKA, default max_bytes. Load average: this "
        "machine is shared (another engineer's test suite ran throughout); the 'load avg' column gives the "
        "1-minute load during each size, and every ratio is between runs alternated in one process. "
        f"Answers: 'vs float64' is over the pairs of the first {REFERENCE_MODELS} models "
        f"against a float64 reference; above {CKA_TOLERANCE:g} fails the run, as does a difference from NumPy above "
        f"{CKA_TOLERANCE:g} or, where NumPy's own float32 error is larger (many stimuli), above twice that error. "
        f"Whole grid: {minutes:.1f} min."
        + (f" Sizes marked (re-run) were measured again after a kernel change, at {rows_rerun_at(rows)} UTC "
           "(the rest are from the whole-grid run)." if rows_rerun_at(rows) else "")
        + ("" if args.quick else f"\n\n{PROFILED}") + "\n"
    )
    return publish("cka-grid", table_rows, columns, notes, args)


if __name__ == "__main__":
    main()
