"""``jaxagree demo``: the study on its embedded default, offline, on a laptop.

A zoo of conv nets, ViTs and MLP-Mixers (:func:`jaxagree.models.digits_zoo.digits_zoo`) is trained with
optax on cluttered handwritten digits (scikit-learn's bundled digits on 32 x 32 canvases,
:mod:`jaxagree.data.digits`), saved with orbax; every model runs over a pool of canvases whose
digits no training canvas showed and over jaxagree's synthetic probes (squares; local-global);
then :func:`jaxagree.study.run_study` checks the paper's argument and
:func:`jaxagree.study_report.write_study_report` writes the report. Everything goes through the
public engine a user runs on ImageNet: ``train_zoo``, ``read_zoo``, ``open_stimuli``, ``extract``.

The output folder keeps ``zoo/`` (checkpoints and the generated ``zoo.toml``) and ``cache/`` (the
extraction cache) across runs: a second demo trains nothing and runs no model again.

:func:`simulate_predictions` (a generated prediction table) stays for tests and benchmarks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxagree.io import PredictionTable

DEFAULT_OUT = Path("jaxagree-demo")
KEPT = ("zoo", "cache")  # entries of the output folder that outlive runs


class DemoConfig(NamedTuple):
    """Sizes of one demo run.

    Attributes:
      pool: pool canvases (the ordinary stimuli; digits no training canvas shows).
      k: contrastive stimuli (2% of the pool, as the paper's 1,000 of 50,000); also the size of
        the random and probe sets.
      num_bins: accuracy bins.
      num_bootstrap: replicates of every interval.
      num_permutations: label shuffles of each AUC p-value.
    """

    pool: int
    k: int
    num_bins: int
    num_bootstrap: int
    num_permutations: int

    def sources(self) -> dict[str, str]:
        """The SOURCE strings of the run's stimuli: the pool and the probes (the zoo's training
        and held-out canvases: :mod:`jaxagree.models.digits_zoo`)."""
        return {
            # Pool digits, canvases of another seed than the zoo's held-out ones.
            "pool": f"synthetic:digits?split=pool&n={self.pool}&size=32&seed=0",
            "squares": f"synthetic:squares?n={self.k}&size=32&square=5&count=2&seed=2",
            # 49 pixels: the smallest Navon figure with 5-pixel cells; the models resize it to 32.
            "local_global": f"synthetic:local_global?n={self.k}&size=49&grid=5&seed=3",
        }


FULL = DemoConfig(pool=2_000, k=40, num_bins=5, num_bootstrap=200, num_permutations=1000)
QUICK = DemoConfig(pool=400, k=16, num_bins=2, num_bootstrap=50, num_permutations=200)


class DemoResult(NamedTuple):
    """What :func:`run_demo` did.

    Attributes:
      study: the :class:`~jaxagree.study.Study`.
      written: the report's files by name.
      seconds: wall time of each step (train, extract, study, report).
      trained: the zoo's :class:`~jaxagree.models.train.TrainResult` (``reused`` where the zoo
        folder had the model).
      models_run: models that ran over some stimulus set (0 when the cache had every one).
    """

    study: object
    written: dict[str, Path]
    seconds: dict[str, float]
    trained: list
    models_run: int


def run_demo(out_dir: str | os.PathLike, *, quick: bool = False, progress: bool = True,
             staging: str | os.PathLike | None = None) -> DemoResult:
    """Train the demo zoo (or reuse it), run it over the pool and the probes (or reuse the
    cache), run the study and write the report.

    Args:
      out_dir: the output folder; ``zoo/`` and ``cache/`` in it are reused by later runs.
      quick: the small configuration (:data:`QUICK`: fewer models, stimuli and replicates).
      progress: progress bars for training and extraction.
      staging: where the report files go (default ``out_dir``); the CLI writes them to a staging
        folder that replaces the previous report as a whole.
    """
    from jaxagree.data import open_stimuli
    from jaxagree.models import read_zoo
    from jaxagree.models.digits_zoo import QUICK_TRAIN_SOURCE, TRAIN_SOURCE, train_digits_zoo
    from jaxagree.pipeline import extract
    from jaxagree.study import run_study
    from jaxagree.study_report import write_study_report

    config = QUICK if quick else FULL
    sources = config.sources()
    out = Path(out_dir)
    seconds = {}
    start = time.perf_counter()
    trained = train_digits_zoo(out / "zoo", quick=quick, progress=progress)
    seconds["train"] = time.perf_counter() - start
    zoo = read_zoo(out / "zoo" / "zoo.toml")

    start = time.perf_counter()
    pool = open_stimuli(sources["pool"])
    pool_run = extract(zoo, pool, cache_dir=out / "cache", progress=progress)
    probe_runs = {name: extract(zoo, open_stimuli(sources[name]), cache_dir=out / "cache", progress=progress)
                  for name in ("squares", "local_global")}
    probes = {name: run.features["penultimate"] for name, run in probe_runs.items()}
    models_run = len({name for run in (pool_run, *probe_runs.values())
                      for name, rate in run.images_per_second.items() if rate is not None})
    seconds["extract"] = time.perf_counter() - start

    start = time.perf_counter()
    architectures = [spec.metadata["architecture"] for spec in zoo]  # digits_zoo names each
    study = run_study(
        models=pool_run.models, families=[spec.family for spec in zoo], predictions=pool_run.predictions,
        labels=pool.labels, num_categories=len(pool.categories), features=pool_run.features["penultimate"],
        probes=probes, metadata=[spec.metadata for spec in zoo], k=config.k, num_bins=config.num_bins,
        num_bootstrap=config.num_bootstrap, num_permutations=config.num_permutations,
        architectures=architectures if len(set(architectures)) < len(architectures) else None,
    )
    seconds["study"] = time.perf_counter() - start

    start = time.perf_counter()
    shown = study.agreement.contrastive[:12]
    notes = [
        f"Training: {len(trained)} models on {QUICK_TRAIN_SOURCE if quick else TRAIN_SOURCE} (optax AdamW, "
        f"budgets in zoo/zoo.toml); {sum(r.reused for r in trained)} reused from {out / 'zoo'}.",
        f"Pool: {sources['pool']} (digits disjoint from training). Probes: {sources['squares']}; "
        f"{sources['local_global']}.",
        f"Features: each model's penultimate layer; linear CKA (biased). Intervals: {config.num_bootstrap} "
        "bootstrap resamples of the stimuli (agreement: percentile; identifiability: the replicates' "
        "percentile spread placed at the estimate).",
        "Rerun: `jaxagree demo` reuses the trained zoo and the extraction cache in this folder.",
    ]
    written = write_study_report(
        study, staging or out, images=pool.read(shown.tolist()), labels=pool.labels, predictions=pool_run.predictions,
        categories=list(pool.categories), title="jaxagree demo: contrastive stimuli on a zoo trained here",
        extra={"demo": {"quick": quick, "sources": sources, "seconds": {k: round(v, 1) for k, v in seconds.items()}}},
        notes=notes,
    )
    seconds["report"] = time.perf_counter() - start
    return DemoResult(study, written, seconds, trained, models_run)


def simulate_predictions(
    *,
    num_models: int = 120,
    num_stimuli: int = 4000,
    num_categories: int = 100,
    confusable: int = 3,
    no_response_rate: float = 0.001,
    seed: int = 0,
) -> PredictionTable:
    """Predictions of ``num_models`` simulated classifiers, with true labels (for tests and
    benchmarks: stimuli differ in difficulty and each has a few plausible wrong answers, so errors
    agree partly, as real models' do).

    Model ``m`` answers stimulus ``i`` correctly with probability
    ``sigmoid(1.7 (skill_m - difficulty_i))``; a wrong answer is one of the stimulus's
    ``confusable`` look-alike categories with probability 0.7, any category otherwise.
    """
    if num_models < 2 or num_stimuli < 1 or num_categories < confusable + 1:
        raise ValueError("need num_models >= 2, num_stimuli >= 1, num_categories > confusable")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_categories, num_stimuli)
    difficulty = rng.normal(0.0, 1.0, num_stimuli) + 2.0 * (rng.random(num_stimuli) < 0.05)
    skill = np.sort(rng.uniform(-0.5, 2.5, num_models))
    p_right = 1.0 / (1.0 + np.exp(-1.7 * (skill[:, None] - difficulty[None, :])))
    right = rng.random((num_models, num_stimuli)) < p_right
    # Look-alikes: categories other than the label, with stimulus-specific preferences.
    lookalike = (labels[:, None] + rng.integers(1, num_categories, (num_stimuli, confusable))) % num_categories
    preference = rng.dirichlet(np.ones(confusable), num_stimuli)
    choice = (rng.random((num_models, num_stimuli, 1)) > preference.cumsum(1)[None]).sum(-1)
    choice = np.minimum(choice, confusable - 1)
    confused = lookalike[np.arange(num_stimuli)[None, :], choice]
    random_answer = rng.integers(0, num_categories, (num_models, num_stimuli))
    wrong = np.where(rng.random((num_models, num_stimuli)) < 0.7, confused, random_answer)
    preds = np.where(right, labels[None, :], wrong)
    preds = np.where(rng.random(preds.shape) < no_response_rate, -1, preds).astype(np.int32)
    width = len(str(num_models - 1))
    return PredictionTable(
        predictions=preds,
        labels=labels.astype(np.int32),
        models=[f"model_{m:0{width}d}" for m in range(num_models)],
        stimuli=[f"stimulus_{i:05d}" for i in range(num_stimuli)],
        categories=[f"category_{j:03d}" for j in range(num_categories)],
    )


__all__ = ["DEFAULT_OUT", "FULL", "KEPT", "QUICK", "DemoConfig", "DemoResult", "run_demo", "simulate_predictions"]
