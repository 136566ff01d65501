"""Bootstrap intervals of kappa (all and contrastive stimuli, per subset) and error consistency:
each replicate against float64 NumPy on the resampled table, and coverage on a simulated case."""

import csv
import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxagree as ja
from jaxagree.agreement_bootstrap import agreement_bootstrap
from jaxagree.analysis import analyse_agreement
from jaxagree.cli import main
from jaxagree.demo import simulate_predictions

from . import reference


def _table(seed: int, num_models: int = 9, num_stimuli: int = 50, num_categories: int = 4, missing: float = 0.1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_categories, num_stimuli)
    right = rng.random((num_models, num_stimuli)) < rng.uniform(0.3, 0.9, num_models)[:, None]
    preds = np.where(right, labels, rng.integers(0, num_categories, (num_models, num_stimuli)))
    preds[rng.random(preds.shape) < missing] = -1
    labels[rng.random(num_stimuli) < 0.1] = -1  # unlabelled stimuli
    return preds.astype(np.int32), labels.astype(np.int32)


def _kappa_of_draws(table: np.ndarray, ids: np.ndarray, method: str) -> float:
    """Fleiss' kappa of resampled rows, straight from rating pairs: the chance term counts every
    ordered pair of ratings except those on two different copies of one stimulus."""
    table = np.asarray(table, np.float64)
    n = table.sum(1)
    rated = n >= 2
    if not rated.any():
        return np.nan
    observed = np.mean([(t * (m - t)).sum() / (m * (m - 1)) for t, m in zip(table[rated], n[rated])])
    if method == "randolph":
        chance = 1 - 1 / table.shape[1]
    else:
        pairs, same = 0.0, 0.0
        for a in range(len(ids)):
            for b in range(len(ids)):
                if a != b and ids[a] == ids[b]:
                    continue  # two copies of one draw
                pairs += n[a] * n[b]
                same += table[a] @ table[b]
        chance = 1 - same / pairs
    return np.nan if chance <= 0 else 1 - observed / chance


def _reference_replicate(preds, members, draws, k, num_categories, method):
    """(kappa over all draws, kappa over the k lowest-agreement draws) of one subset; draws in
    stimulus order so that ties go to the lower stimulus index."""
    draws = np.sort(draws)
    table = reference.counts(preds[members][:, draws], num_categories)
    chosen = reference.contrastive(reference.agreement(table), k)
    chosen = chosen[~np.isnan(reference.agreement(table)[chosen])]  # fewer than k defined: all of them
    return (_kappa_of_draws(table, draws, method),
            _kappa_of_draws(table[chosen], draws[chosen], method))


def _reference_consistency(preds, labels, draws):
    draws = draws[labels[draws] >= 0]
    return reference.error_consistency(preds[:, draws] == labels[draws][None, :])


@pytest.mark.parametrize("method", ["fleiss", "randolph"])
@pytest.mark.parametrize("seed, shape", [(0, (9, 50, 4)), (1, (6, 31, 3)), (2, (12, 40, 7))])
def test_every_replicate_equals_float64_on_the_resampled_table(seed, shape, method):
    num_models, num_stimuli, num_categories = shape
    preds, labels = _table(seed, num_models, num_stimuli, num_categories)
    mask = np.zeros((3, num_models), bool)
    mask[0] = True
    mask[1, : num_models // 2] = True
    mask[2, num_models // 2 :] = True
    k = 5
    boot = agreement_bootstrap(preds, num_categories=num_categories, k=k, model_mask=mask, labels=labels,
                               num_bootstrap=12, seed=seed, method=method)
    draws = np.asarray(ja.bootstrap_indices(jax.random.key(seed), num_stimuli, 12))
    for r in range(12):
        for s, members in enumerate(mask):
            want_all, want_contrastive = _reference_replicate(preds, members, draws[r], k, num_categories, method)
            assert boot.kappa_all.replicates[r, s] == pytest.approx(want_all, abs=2e-6, nan_ok=True)
            assert boot.kappa_contrastive.replicates[r, s] == pytest.approx(want_contrastive, abs=2e-6, nan_ok=True)
        np.testing.assert_allclose(boot.error_consistency.replicates[r], _reference_consistency(preds, labels, draws[r]),
                                   rtol=0, atol=2e-6)


def test_the_estimate_is_the_analysis_on_the_stimuli_as_given():
    preds, labels = _table(3, 15, 80, 5)
    analysis = analyse_agreement(preds, num_categories=5, labels=labels, k=6, num_bins=3, num_bootstrap=20)
    boot = analysis.bootstrap
    assert boot.kappa_all.estimate[0] == pytest.approx(analysis.fleiss_kappa, abs=1e-6)
    assert boot.kappa_contrastive.estimate[0] == pytest.approx(analysis.contrastive_kappa, abs=1e-6)
    np.testing.assert_allclose(boot.kappa_all.estimate[1:], analysis.per_bin.kappa_all, atol=1e-6)
    np.testing.assert_allclose(boot.kappa_contrastive.estimate[1:], analysis.per_bin.kappa_contrastive, atol=1e-6)
    labelled = labels >= 0
    want = reference.error_consistency(preds[:, labelled] == labels[labelled][None, :])
    np.testing.assert_allclose(boot.error_consistency.estimate, want, atol=2e-6)
    assert boot.num_bootstrap == 20 and boot.kappa_all.replicates.shape == (20, 4)


def test_one_seed_draws_what_cka_bootstrap_draws():
    """Same seed and stimulus count: the same resamples, so kappa and CKA intervals are paired."""
    preds, _ = _table(4, 6, 30, 3, missing=0.0)
    features = np.random.default_rng(0).normal(size=(6, 30, 5)).astype(np.float32)
    cka = ja.cka_bootstrap(features, num_bootstrap=5, seed=7)
    boot = agreement_bootstrap(preds, num_categories=3, k=3, num_bootstrap=5, seed=7)
    for r, draws in enumerate(np.asarray(cka.indices)):
        want, _ = _reference_replicate(preds, np.ones(6, bool), draws, 3, 3, "fleiss")
        assert boot.kappa_all.replicates[r, 0] == pytest.approx(want, abs=2e-6)


def _population():
    population = simulate_predictions(num_models=30, num_stimuli=60_000, num_categories=20, seed=1)
    stats = ja.agreement_stats(population.predictions, num_categories=20)
    right = population.predictions == population.labels[None, :]
    return population, float(ja.fleiss_kappa(stats)), np.asarray(ja.error_consistency(right))


def test_intervals_cover_the_truth_at_about_their_nominal_rate():
    """90% intervals from samples of 1,000 stimuli of a simulated population of 60,000: kappa over
    all stimuli and error consistency against the population's values; kappa over the contrastive
    stimuli, whose value depends on how many stimuli it is taken from, against the mean of its
    estimate over the samples. 40 samples: a rate of 0.9 lands in [0.75, 1] with probability 0.99."""
    population, kappa_all, consistency = _population()
    rng = np.random.default_rng(0)
    samples = [np.sort(rng.choice(60_000, 1000, replace=False)) for _ in range(40)]
    results = [agreement_bootstrap(population.predictions[:, s], num_categories=20, k=20,
                                   labels=population.labels[s], num_bootstrap=200, seed=i, confidence=0.9)
               for i, s in enumerate(samples)]
    contrastive_mean = np.mean([b.kappa_contrastive.estimate[0] for b in results])
    covered_all = np.mean([b.kappa_all.low[0] <= kappa_all <= b.kappa_all.high[0] for b in results])
    covered_contrastive = np.mean([b.kappa_contrastive.low[0] <= contrastive_mean <= b.kappa_contrastive.high[0]
                                   for b in results])
    upper = np.triu_indices(30, 1)
    covered_pairs = np.mean([((b.error_consistency.low <= consistency) & (consistency <= b.error_consistency.high))[upper]
                             for b in results])
    assert 0.75 <= covered_all <= 1.0, covered_all
    assert 0.75 <= covered_contrastive <= 1.0, covered_contrastive
    assert 0.8 <= covered_pairs <= 0.97, covered_pairs
    # Centred on the estimate: copies of one draw do not inflate the chance agreement.
    bias = np.mean([b.kappa_contrastive.replicates[:, 0].mean() - b.kappa_contrastive.estimate[0] for b in results])
    half_width = np.mean([(b.kappa_contrastive.high[0] - b.kappa_contrastive.low[0]) / 2 for b in results])
    assert abs(bias) < 0.15 * half_width, (bias, half_width)


# Few shapes: each new shape compiles the kernels again, which is what the time goes to.
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), num_models=st.sampled_from([2, 7]), num_stimuli=st.sampled_from([5, 40]),
       num_categories=st.sampled_from([2, 6]), missing=st.sampled_from([0.0, 0.3]))
def test_intervals_hold_their_replicates_and_ignore_model_order(seed, num_models, num_stimuli, num_categories, missing):
    k = 2
    preds, labels = _table(seed, num_models, num_stimuli, num_categories, missing=missing)
    preds[:2, :k] = 0  # k stimuli with an agreement value, however many responses are missing
    boot = agreement_bootstrap(preds, num_categories=num_categories, k=k, labels=labels, num_bootstrap=30, seed=seed)
    for interval in (boot.kappa_all, boot.kappa_contrastive):
        finite = interval.replicates[np.isfinite(interval.replicates)]
        if finite.size:
            assert interval.low[0] <= interval.high[0]
            assert finite.min() - 1e-6 <= interval.low[0] and interval.high[0] <= finite.max() + 1e-6
            assert finite.max() <= 1 + 1e-6
    order = np.random.default_rng(seed).permutation(num_models)
    permuted = agreement_bootstrap(preds[order], num_categories=num_categories, k=k, num_bootstrap=30, seed=seed)
    np.testing.assert_allclose(permuted.kappa_all.replicates, boot.kappa_all.replicates, atol=1e-6)
    np.testing.assert_allclose(permuted.kappa_contrastive.replicates, boot.kappa_contrastive.replicates, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_bootstrap": 1}, "num_bootstrap must be at least 2"),
    ({"num_bootstrap": 0}, "num_bootstrap"),
    ({"confidence": 1.0}, "confidence must lie in"),
    ({"k": 200}, "k=200 is larger than"),
    ({"k": 0}, "k must be"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"method": "cohen"}, "method must be"),
    ({"model_mask": np.eye(9, dtype=bool)[:2]}, "model_mask row 0 selects 1 model"),
    ({"model_mask": np.ones((2, 8), bool)}, "model_mask has 8 models but predictions has 9"),
    ({"labels": np.zeros(49, np.int32)}, "labels has 49 stimuli"),
    ({"labels": np.full(50, 4, np.int32)}, "labels"),
])
def test_bad_input_names_what_is_wrong(kwargs, message):
    preds, _ = _table(0)
    arguments = {"num_categories": 4, "k": 3, "num_bootstrap": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        agreement_bootstrap(preds, **arguments)


def test_cli_writes_intervals(tmp_path, capsys):
    preds, labels = _table(5, 12, 60, 4)
    np.savez(tmp_path / "preds.npz", predictions=preds, labels=labels)
    out = tmp_path / "out"
    argv = ["agreement", str(tmp_path / "preds.npz"), "--out", str(out), "--k", "5", "--bins", "2",
            "--bootstrap", "40", "--seed", "3", "--confidence", "0.9"]
    assert main(argv) == 0
    capsys.readouterr()
    want = analyse_agreement(preds, num_categories=4, labels=labels, k=5, num_bins=2, num_bootstrap=40, seed=3,
                             confidence=0.9).bootstrap
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bootstrap"]["num_bootstrap"] == 40 and summary["bootstrap"]["confidence"] == 0.9
    np.testing.assert_allclose(summary["bootstrap"]["fleiss_kappa_interval"],
                               [want.kappa_all.low[0], want.kappa_all.high[0]], atol=1e-6)
    np.testing.assert_allclose(summary["bootstrap"]["contrastive_fleiss_kappa_interval"],
                               [want.kappa_contrastive.low[0], want.kappa_contrastive.high[0]], atol=1e-6)
    for b, row in enumerate(summary["accuracy_bins"]):
        np.testing.assert_allclose(row["fleiss_kappa_contrastive_interval"],
                                   [want.kappa_contrastive.low[1 + b], want.kappa_contrastive.high[1 + b]], atol=1e-6)
    with open(out / "bins.csv") as f:
        bins = list(csv.DictReader(f))
    np.testing.assert_allclose([float(r["fleiss_kappa_all_low"]) for r in bins], want.kappa_all.low[1:], atol=1e-6)
    with open(out / "error_consistency_intervals.csv") as f:
        pairs = list(csv.DictReader(f))
    assert len(pairs) == 12 * 11 // 2
    first = pairs[0]
    assert (first["model_a"], first["model_b"]) == ("model_0", "model_1") or first["model_a"] != first["model_b"]
    assert float(first["low"]) == pytest.approx(want.error_consistency.low[0, 1], abs=1e-6)
    upper = np.triu_indices(12, 1)
    means = np.nanmean(want.error_consistency.replicates[:, upper[0], upper[1]], axis=1)
    assert summary["bootstrap"]["mean_error_consistency_interval"][0] == pytest.approx(
        np.percentile(means, 5), abs=1e-6)


def test_without_bootstrap_nothing_changes(tmp_path, capsys):
    preds, labels = _table(6, 10, 40, 4)
    np.savez(tmp_path / "preds.npz", predictions=preds, labels=labels)
    assert main(["agreement", str(tmp_path / "preds.npz"), "--out", str(tmp_path / "out"), "--k", "4"]) == 0
    capsys.readouterr()
    assert "bootstrap" not in json.loads((tmp_path / "out" / "summary.json").read_text())
    assert not (tmp_path / "out" / "error_consistency_intervals.csv").exists()
