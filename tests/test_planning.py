"""stimuli_needed: the bootstrap interval of an identifiability score over subsample sizes, its
1/sqrt(n) fit and the size that reaches a width, on planted family structure of chosen strength."""

import math

import numpy as np
import pytest

import jaxagree as ja
from jaxagree.analysis import StimulusPlan, stimuli_needed
from jaxagree.analysis._planning import _check_sizes
from jaxagree.identify import encode_groups

POOL = 192
SIZES = [12, 24, 48, 96, 192]  # one set of shapes for every plan here: the kernels compile once
FAMILIES = np.repeat(["a", "b", "c"], 4)
BOOTSTRAP = 100


def planted(strength: float, seed: int = 0, dim: int = 8) -> np.ndarray:
    """Three families of four models. Every model sees a shared signal, plus its family's own
    signal times ``strength``, plus model noise, through a turn of its own: the larger
    ``strength``, the better CKA tells the families apart on any stimuli."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(POOL, dim))
    own = {family: rng.normal(size=(POOL, dim)) for family in np.unique(FAMILIES)}
    features = []
    for family in FAMILIES:
        x = shared + strength * own[family] + rng.normal(size=(POOL, dim))
        features.append(np.tanh(x @ (np.eye(dim) + 0.3 * rng.normal(size=(dim, dim)))))
    return np.stack(features).astype(np.float32)


def plan(features, score="auc", width=0.1, **kwargs) -> StimulusPlan:
    return stimuli_needed(features, FAMILIES, width=width, score=score, sizes=SIZES, num_bootstrap=BOOTSTRAP,
                          **kwargs)


@pytest.fixture(scope="module")
def moderate():
    return planted(0.6)


@pytest.mark.parametrize(("strength", "score"), [(0.6, "silhouette"), (1.0, "silhouette"), (0.6, "auc")])
def test_widths_shrink_as_one_over_root_n(strength, score):
    result = plan(planted(strength), score)
    assert list(result.sizes) == SIZES and result.replicates.shape == (len(SIZES), BOOTSTRAP)
    np.testing.assert_allclose(result.widths, result.high - result.low)
    assert (result.low <= result.median).all() and (result.median <= result.high).all()
    assert result.widths[-1] < result.widths[0] / 3  # 16 times the stimuli: about a quarter of the width
    assert -0.8 <= result.exponent <= -0.3, result.widths
    # The fixed-exponent fit is least squares in log space: its residuals sum to zero.
    residuals = np.log(result.widths) - np.log(result.predicted_width(result.sizes))
    assert abs(residuals.sum()) < 1e-9
    assert np.abs(residuals).max() < np.log(2)  # and the law holds within a factor of 2 at every size


def test_needed_grows_as_the_width_narrows_and_extrapolates_beyond_the_pool(moderate):
    widths = [0.4, 0.2, 0.1, 0.05, 0.02]
    plans = [plan(moderate, width=w) for w in widths]
    needed = [p.needed for p in plans]
    assert needed == sorted(needed) and len(set(needed)) == len(needed), needed
    for p in plans:  # one curve (the width asked changes nothing measured), read at each width
        np.testing.assert_array_equal(p.replicates, plans[0].replicates)
        assert p.needed == max(4, math.ceil((p.coefficient / p.width) ** 2))
        assert p.predicted_width(p.needed) <= p.width < p.predicted_width(p.needed - 1) or p.needed == 4
    # A width below what the whole pool reaches needs more stimuli than the pool holds.
    narrow = plans[-1]
    assert narrow.width < narrow.widths[-1] and narrow.needed > POOL and narrow.extrapolated
    assert narrow.reached_at is None
    inside = plans[1]
    assert SIZES[0] <= inside.needed <= POOL and not inside.extrapolated
    reached = [n for n, w in zip(inside.sizes, inside.widths) if w <= inside.width]
    assert inside.reached_at == reached[0]


def test_stronger_structure_separates_on_fewer_stimuli():
    strong, weak = plan(planted(1.0)), plan(planted(0.3))
    assert strong.chance == weak.chance == 0.5
    assert strong.separates_at == SIZES[0]
    assert weak.separates_at is None or weak.separates_at > strong.separates_at
    # separates_at is the first size whose lower bound is above chance.
    first = [n for n, low in zip(strong.sizes, strong.low) if low > 0.5][0]
    assert strong.separates_at == first
    assert np.median(strong.median) > np.median(weak.median)


def test_chance_levels_of_the_other_scores(moderate):
    # 12 models in 3 families of 4: a model's 3 siblings among 11 others; 18 of 66 pairs within.
    expected = {"knn_accuracy": 3 / 11, "auprc": 18 / 66, "silhouette": 0.0, "conformity": 0.5}
    for score, chance in expected.items():
        result = plan(moderate, score)
        assert result.chance == pytest.approx(chance) and result.score == score


def test_a_model_alone_in_its_group_is_left_out_as_identifiability_leaves_it(moderate):
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 3 + ["d"]
    result = stimuli_needed(moderate, groups, width=0.1, score="knn_accuracy", sizes=SIZES, num_bootstrap=BOOTSTRAP)
    assert result.chance == pytest.approx((8 * 3 / 11 + 3 * 2 / 11) / 11)  # the 11 models with a sibling
    assert result.groups == ("a", "b", "c", "d") and np.isfinite(result.replicates).all()
    auprc = stimuli_needed(moderate, groups, width=0.1, score="auprc", sizes=SIZES, num_bootstrap=BOOTSTRAP)
    assert auprc.chance == pytest.approx((6 + 6 + 3) / 66)


def test_the_same_seed_gives_the_same_plan(moderate):
    first, again, other = plan(moderate, seed=3), plan(moderate, seed=3), plan(moderate, seed=4)
    np.testing.assert_array_equal(first.replicates, again.replicates)
    assert first.needed == again.needed and first.separates_at == again.separates_at
    assert not np.array_equal(first.replicates, other.replicates)


def test_each_size_is_the_bootstrap_of_a_random_subset_of_that_size(moderate):
    """The largest size is the pool: its replicates are those of cka_bootstrap of the pool."""
    result = plan(moderate, seed=5)
    boot = ja.cka_bootstrap(moderate, num_bootstrap=BOOTSTRAP, seed=5, stimuli=np.arange(POOL))
    ids, names = encode_groups(FAMILIES, len(FAMILIES))
    expected = np.asarray(ja.identifiability_scores(boot.replicates, ids, len(names)).auc)
    np.testing.assert_allclose(result.replicates[-1], expected, atol=1e-6)
    assert result.num_stimuli == POOL and result.groups == ("a", "b", "c")
    assert result.num_bootstrap == BOOTSTRAP and result.confidence == 0.95
    # Percentile intervals at the coverage asked for.
    np.testing.assert_allclose(result.low, np.percentile(result.replicates, 2.5, axis=1))
    np.testing.assert_allclose(result.high, np.percentile(result.replicates, 97.5, axis=1))
    half = plan(moderate, seed=5, confidence=0.5)
    np.testing.assert_allclose(half.low, np.percentile(result.replicates, 25, axis=1))
    assert (half.widths < result.widths).all() and half.confidence == 0.5


def test_models_of_different_widths_as_a_list_or_mapping(moderate):
    listed = [m[:, : 4 + i % 5] for i, m in enumerate(moderate)]
    result = plan(listed)
    named = plan({f"m{i}": m for i, m in enumerate(listed)})
    np.testing.assert_array_equal(result.replicates, named.replicates)
    assert result.replicates.shape == (len(SIZES), BOOTSTRAP)


def test_default_sizes_are_a_geometric_grid_up_to_the_pool():
    # The grid alone (every size of a plan compiles its own bootstrap kernel: six sizes of the
    # pool here would cost ~30 s of compiling for one assertion about numbers).
    sizes = _check_sizes(None, POOL)
    assert sizes[0] == 16 and sizes[-1] == POOL and len(sizes) == 6
    ratios = sizes[1:] / sizes[:-1]
    np.testing.assert_allclose(ratios, ratios.mean(), rtol=0.1)
    assert list(_check_sizes(None, 2_000)) == [100, 182, 331, 603, 1099, 2000]  # 5% of the pool first


def test_a_plan_without_sizes_runs_on_the_default_grid():
    small = planted(0.6)[:, :5]  # a pool of 5: the default grid is [4, 5]
    result = stimuli_needed(small, FAMILIES, width=0.1, num_bootstrap=2)
    assert list(result.sizes) == list(_check_sizes(None, 5)) == [4, 5]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"width": 0}, "width must be a positive number"),
    ({"width": float("nan")}, "width must be a positive number"),
    ({"score": "accuracy"}, "score must be one of auc, knn_accuracy, silhouette, auprc, conformity"),
    ({"sizes": [2, 24]}, r"sizes: 2 is outside \[4, 192\]"),
    ({"sizes": [12, 193]}, r"sizes: 193 is outside \[4, 192\]"),
    ({"sizes": [12, 12]}, "at least two distinct sizes"),
    ({"sizes": [12.0, 24.0]}, "sizes must be a 1-d sequence of integers"),
    ({"num_bootstrap": 1}, "num_bootstrap must be at least 2"),
    ({"num_bootstrap": 0}, "num_bootstrap must be a positive integer"),
    ({"confidence": 1.0}, r"confidence must lie in \(0, 1\)"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"groups": ["a"] * 12}, "groups: 1 group"),
    ({"groups": list("abcdefghijkl")}, "a group of at least two models"),
    ({"groups": ["a"] * 11}, "one label per model"),
    ({"features": np.zeros((12, 4))}, r"features must have shape \[models, stimuli, dim\]"),
    ({"features": [np.zeros((10, 3))] * 11 + [np.zeros((9, 3))]}, "model 11 has 9 stimuli but model 0 has 10"),
    ({"features": np.zeros((12, 4, 3), np.float32)}, "a pool of 4 stimuli"),
])
def test_bad_arguments_name_what_is_wrong(moderate, arguments, message):
    call = {"features": moderate, "groups": FAMILIES, "width": 0.1, "sizes": SIZES, "num_bootstrap": 2, **arguments}
    with pytest.raises(ValueError, match=message):
        stimuli_needed(call.pop("features"), call.pop("groups"), **call)
