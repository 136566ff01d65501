"""Stimulus bootstrap of the all-pairs CKA matrix: every replicate against ``cka_matrix`` of its
gathered resample, the draws, tiling, coverage on a simulated case, bad input."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxagree as ja
from jaxagree.cka import resample
from jaxagree.cka.resample import circulant_pairs, pair_position


def models_of(rng, n, dims, offset=3.0):
    """Models that share latents, so CKA spans a range of values (and large means)."""
    latent = rng.normal(size=(n, 4))
    return [np.tanh(latent @ rng.normal(size=(4, d))) + 0.5 * rng.normal(size=(n, d)) + offset for d in dims]


def gathered_reference(features, result, debiased):
    """``cka_matrix`` of each replicate's resample: the definition."""
    models = list(features.values()) if isinstance(features, dict) else list(features)
    subset = np.asarray(result.stimuli)
    return np.stack([np.asarray(ja.cka_matrix([np.asarray(m)[subset][np.asarray(idx)] for m in models],
                                              debiased=debiased)) for idx in result.indices])


CASES = [  # (form, dims, subset size or None)
    ("stacked", (8, 8, 8, 8), None),
    ("sequence", (5, 9, 13, 7), 30),
    ("mapping", (3, 11, 6), None),
]


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("form, dims, subset", CASES)
def test_each_replicate_is_cka_matrix_of_its_gathered_resample(debiased, form, dims, subset):
    rng = np.random.default_rng(len(dims) + 10 * debiased)
    models = models_of(rng, 48, dims)
    features = {"stacked": lambda: np.stack(models).astype(np.float32), "sequence": lambda: models,
                "mapping": lambda: {f"m{i}": m for i, m in enumerate(models)}}[form]()
    stimuli = None if subset is None else rng.choice(48, subset, replace=False)
    result = ja.cka_bootstrap(features, num_bootstrap=6, seed=1, debiased=debiased, stimuli=stimuli)
    size = 48 if subset is None else subset
    assert result.replicates.shape == (6, len(dims), len(dims)) and result.indices.shape == (6, size)
    np.testing.assert_array_equal(result.stimuli, np.arange(48) if subset is None else stimuli)
    np.testing.assert_allclose(result.replicates, gathered_reference(features, result, debiased), atol=2e-6)
    whole = [m if subset is None else m[stimuli] for m in models]
    np.testing.assert_allclose(result.estimate, ja.cka_matrix(whole, debiased=debiased), atol=1e-7)
    assert result.gathered.shape == (0,)  # every replicate by the shortcut


def test_tiles_and_replicate_chunks_do_not_change_the_result():
    rng = np.random.default_rng(5)
    models = models_of(rng, 24, (6, 10, 4, 8, 5))
    whole = ja.cka_bootstrap(models, num_bootstrap=301, seed=2, debiased=True)
    support = resample.support_bound(ja.bootstrap_weights(whole.indices, 24))
    max_bytes = resample.bootstrap_bytes(4, 24, 10, 151, support)
    # Five models in tiles of two (a ragged last tile); 301 replicates in two chunks (the last padded).
    assert resample.bootstrap_plan(5, 24, 10, 301, support, max_bytes) == (2, 151)
    assert resample.bootstrap_plan(5, 24, 10, 301, support, max_bytes + 10**6) == (5, 151)
    tiled = ja.cka_bootstrap(models, num_bootstrap=301, seed=2, debiased=True, max_bytes=max_bytes)
    np.testing.assert_allclose(tiled.replicates, whole.replicates, atol=1e-6)
    np.testing.assert_allclose(tiled.replicates, gathered_reference(models, tiled, True), atol=2e-6)
    assert whole.gathered.shape == tiled.gathered.shape == (0,)


def test_draws_are_deterministic_reusable_and_have_the_right_marginals():
    key = jax.random.key(7)
    indices = ja.bootstrap_indices(key, 500, 64)
    assert indices.shape == (64, 500) and indices.dtype == jnp.int32
    np.testing.assert_array_equal(indices, ja.bootstrap_indices(jax.random.key(7), 500, 64))
    assert not np.array_equal(indices, ja.bootstrap_indices(jax.random.key(8), 500, 64))
    assert int(indices.min()) == 0 and int(indices.max()) == 499
    weights = np.asarray(ja.bootstrap_weights(indices, 500))
    np.testing.assert_array_equal(weights.sum(axis=1), 500)
    np.testing.assert_array_equal(weights[3], np.bincount(np.asarray(indices[3]), minlength=500))
    # Each stimulus is drawn Binomial(n, 1/n) times: mean 1, ~63% drawn at least once.
    assert abs(weights.mean() - 1) < 1e-9 and abs(weights.var() - (1 - 1 / 500)) < 0.03
    np.testing.assert_allclose((weights > 0).mean(), 1 - (1 - 1 / 500) ** 500, atol=0.01)

    rng = np.random.default_rng(0)
    models = models_of(rng, 50, (4, 6, 5))
    first = ja.cka_bootstrap(models, num_bootstrap=5, seed=3)
    np.testing.assert_array_equal(first.indices, ja.bootstrap_indices(jax.random.key(3), 50, 5))
    np.testing.assert_array_equal(first.replicates, ja.cka_bootstrap(models, num_bootstrap=5, seed=3).replicates)
    other = ja.cka_bootstrap(models, num_bootstrap=5, seed=4)
    assert not np.array_equal(first.indices, other.indices)
    assert np.abs(np.asarray(first.replicates - other.replicates)).max() > 1e-3
    # The same positions over another set of the same size (paired comparisons), seed or indices.
    subset = rng.choice(50, 20, replace=False)
    paired = ja.cka_bootstrap(models, num_bootstrap=5, seed=3, stimuli=subset)
    np.testing.assert_array_equal(paired.indices, ja.cka_bootstrap(models, num_bootstrap=5, seed=3,
                                                                  stimuli=np.arange(20)).indices)
    given = ja.cka_bootstrap(models, indices=paired.indices, stimuli=subset)
    np.testing.assert_array_equal(given.replicates, paired.replicates)


def test_replicates_centre_on_the_full_sample_at_large_n():
    rng = np.random.default_rng(11)
    models = models_of(rng, 2000, (16, 24, 8, 32))
    result = ja.cka_bootstrap(models, num_bootstrap=30, seed=0)
    spread = np.asarray(result.replicates).std(axis=0)
    off = ~np.eye(4, dtype=bool)
    assert (spread[off] > 1e-4).all() and (spread[off] < 0.02).all()
    np.testing.assert_allclose(np.asarray(result.replicates).mean(axis=0), result.estimate, atol=3 * spread.max())


def test_percentile_intervals_cover_the_population_value():
    """y = x A + noise with x ~ N(0, I): population CKA = |A|_F^2 / (sqrt(p) |A^T A + s^2 I|_F).
    The debiased estimator's 90% percentile intervals over 40 simulated data sets."""
    p, q, noise, n = 6, 6, 1.5, 200
    a = np.random.default_rng(0).normal(size=(p, q))
    truth = np.sum(a**2) / (np.sqrt(p) * np.linalg.norm(a.T @ a + noise**2 * np.eye(q)))
    hits, widths = 0, []
    for s in range(40):
        rng = np.random.default_rng(100 + s)
        x = rng.normal(size=(n, p))
        result = ja.cka_bootstrap([x, x @ a + noise * rng.normal(size=(n, q))], num_bootstrap=200, seed=s,
                                  debiased=True)
        low, high = np.percentile(np.asarray(result.replicates[:, 0, 1]), [5, 95])
        hits += int(low <= truth <= high)
        widths.append(high - low)
    assert hits >= 32 and 0.02 < np.mean(widths) < 0.3, (hits, np.mean(widths))  # 37 of 40 here


def test_a_model_constant_on_a_resample_gets_nan_there_as_cka_matrix_does():
    rng = np.random.default_rng(2)
    spike = np.zeros((10, 3))
    spike[0] = 1.0  # constant on every resample that misses stimulus 0
    models = {"spike": spike, "b": rng.normal(size=(10, 4)), "c": rng.normal(size=(10, 2))}
    with pytest.warns(RuntimeWarning, match=r"'spike' \(\d+\)"):
        result = ja.cka_bootstrap(models, num_bootstrap=30, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = gathered_reference(models, result, False)
    missed = ~(np.asarray(result.indices) == 0).any(axis=1)
    assert missed.any() and not missed.all()
    np.testing.assert_array_equal(np.isnan(np.asarray(result.replicates[:, 0, 0])), missed)
    np.testing.assert_allclose(result.replicates, expected, atol=2e-6)  # NaN where expected is NaN
    np.testing.assert_array_equal(result.gathered, np.flatnonzero(missed))  # ill-conditioned: gathered


def test_an_outlier_far_from_the_resample_mean_stays_accurate():
    rng = np.random.default_rng(3)
    models = models_of(rng, 60, (5, 7, 6))
    models[0][7] += 300.0  # centred over the set, the other stimuli sit far from the mean of a resample without it
    result = ja.cka_bootstrap(models, num_bootstrap=12, seed=0)
    assert not (np.asarray(result.indices) == 7).any(axis=1).all()
    np.testing.assert_allclose(result.replicates, gathered_reference(models, result, False), atol=5e-6)
    assert result.gathered.shape == (0,)


def test_pairs_are_laid_out_once_each():
    for n in (5, 6):
        gram = np.arange(n * n, dtype=np.float32).reshape(n, n)
        gram = gram + gram.T
        packed = np.asarray(circulant_pairs(jnp.asarray(gram)))
        a, b = np.nonzero(~np.eye(n, dtype=bool))
        position = np.asarray(pair_position(jnp.asarray(a), jnp.asarray(b), n))
        np.testing.assert_array_equal(packed[position], gram[a, b])
        assert position.min() == 0 and position.max() < n * (n // 2)


BAD = [
    ({"num_bootstrap": 0}, "num_bootstrap must be a positive integer"),
    ({"num_bootstrap": 2.5}, "num_bootstrap must be a positive integer"),
    ({"seed": "a"}, "seed must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"indices": np.zeros((2, 12), int), "seed": 1}, "give indices, or num_bootstrap and seed, not both"),
    ({"indices": np.zeros((2, 11), int)}, r"indices must be an integer array \[replicates, 12\]"),
    ({"indices": np.zeros((0, 12), int)}, r"indices must be an integer array \[replicates, 12\]"),
    ({"indices": np.zeros((2, 12))}, r"indices must be an integer array"),
    ({"indices": np.full((2, 12), 12)}, r"indices\[0, 0\] = 12 is outside \[0, 12\)"),
    ({"stimuli": [0, 1, 1]}, "stimuli: stimulus indices repeat"),
    ({"stimuli": [0, 12]}, r"stimuli: stimulus index 12 is outside \[0, 12\)"),
    ({"stimuli": [4]}, "stimuli: 1 stimuli; biased CKA needs at least 2"),
    ({"stimuli": [4, 5, 6], "debiased": True}, "stimuli: 3 stimuli; debiased CKA needs at least 4"),
    ({"max_bytes": 1000}, "max_bytes=1000 cannot hold the Gram pairs of two models"),
]


@pytest.mark.parametrize("kwargs, match", BAD)
def test_bad_input_names_the_culprit(kwargs, match):
    features = np.random.default_rng(0).normal(size=(3, 12, 4))
    with pytest.raises(ValueError, match=match):
        ja.cka_bootstrap(features, **kwargs)


def test_bad_features_are_checked_as_cka_matrix_checks_them():
    with pytest.raises(ValueError, match="CKA needs at least 2"):
        ja.cka_bootstrap([np.ones((5, 2))])
    bad = np.random.default_rng(0).normal(size=(2, 6, 3))
    bad[1, 4, 2] = np.nan
    with pytest.raises(ValueError, match="model 1 features contain nan at stimulus 4, dimension 2"):
        ja.cka_bootstrap(bad)
