"""compare_stimulus_sets: stimulus sets scored for how well they separate model families, with
bootstrap intervals, on planted structure: the families differ only on a "contrastive" subset."""

import numpy as np
import pytest

import jaxagree as ja
from jaxagree.analysis import compare_stimulus_sets, random_sets
from jaxagree.analysis._sets import centred_interval
from jaxagree.data import open_stimuli

NUM_STIMULI, SIZE = 240, 40
FAMILIES = ["conv"] * 4 + ["vit"] * 4
ARCHITECTURES = ["c1", "c1", "c2", "c2", "v1", "v1", "v2", "v2"]


def planted(seed: int = 0):
    """Every model sees a shared signal on every stimulus; on the first SIZE stimuli (the
    contrastive set) each family adds a strong signal of its own, varied a little per
    architecture, so only those stimuli tell the families (and the architectures) apart."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(NUM_STIMULI, 4))
    family_signal = {f: rng.normal(size=(NUM_STIMULI, 4)) for f in sorted(set(FAMILIES))}  # sorted: a set's order follows PYTHONHASHSEED
    arch_signal = {a: rng.normal(size=(NUM_STIMULI, 4)) for a in sorted(set(ARCHITECTURES))}
    on = (np.arange(NUM_STIMULI) < SIZE)[:, None]
    features = []
    for family, architecture in zip(FAMILIES, ARCHITECTURES):
        own = family_signal[family] + 0.6 * arch_signal[architecture]  # an architecture is a variant of its family
        signal = np.concatenate([shared, on * 3.0 * own], 1)
        features.append(signal @ rng.normal(size=(8, 10)) + 0.3 * rng.normal(size=(NUM_STIMULI, 10)))
    return np.stack(features).astype(np.float32)


@pytest.fixture(scope="module")
def comparison():
    features = planted()
    sets = {"contrastive": np.arange(SIZE), "all": np.arange(NUM_STIMULI),
            **random_sets(NUM_STIMULI, SIZE, 2, seed=1, exclude=np.arange(SIZE))}
    return compare_stimulus_sets(features, FAMILIES, sets, baseline="random_0", num_bootstrap=60,
                                 num_permutations=200, architectures=ARCHITECTURES), features, sets


def test_contrastive_stimuli_separate_the_families_and_random_ones_do_not(comparison):
    result, _, _ = comparison
    contrastive, random = result.sets["contrastive"], result.sets["random_0"]
    assert contrastive.scores.auc > 0.95 and contrastive.scores.knn_accuracy == 1.0
    assert float(contrastive.scores.p_value) < 0.05
    assert contrastive.architecture_rate == 1.0
    assert random.scores.auc < 0.8 and float(random.scores.p_value) > 0.01
    versus = result.versus_baseline["contrastive"]
    assert versus.common_draws and versus.low.auc > 0 and versus.p_value.auc < 0.05
    assert versus.difference.auc == pytest.approx(float(contrastive.scores.auc) - float(random.scores.auc))
    # Two random draws of the same size do not differ beyond their intervals.
    other = result.versus_baseline["random_1"]
    assert other.low.auc < 0 < other.high.auc and other.p_value.auc > 0.05
    assert result.groups == ("conv", "vit") and result.baseline == "random_0"


def test_each_set_is_cka_over_its_stimuli_and_intervals_hold_the_estimate(comparison):
    result, features, sets = comparison
    for name, chosen in sets.items():
        scores = result.sets[name]
        assert scores.num_stimuli == len(chosen)
        np.testing.assert_allclose(scores.similarity, ja.cka_matrix(features[:, chosen]), atol=2e-6)
        expected = ja.identifiability(scores.similarity, FAMILIES, num_permutations=200)
        assert float(scores.scores.auc) == pytest.approx(float(expected.auc))
        assert scores.replicates.auc.shape == (60,)
        for field in ja.IdentifiabilityScores._fields:
            low, high = getattr(scores.low, field), getattr(scores.high, field)
            assert low <= float(getattr(scores.scores, field)) <= high
            spread = np.percentile(getattr(scores.replicates, field), [2.5, 97.5])
            assert high - low <= spread[1] - spread[0] + 1e-9  # the percentile width, less any clipping
    for name, versus in result.versus_baseline.items():
        assert versus.low.auc <= versus.difference.auc <= versus.high.auc


def test_an_interval_is_the_replicates_spread_placed_at_the_estimate_within_the_scores_range():
    tails = (2.5, 97.5)
    shifted = np.linspace(0.70, 0.80, 101)  # replicates centred 0.12 below the estimate
    low, high = centred_interval(0.87, shifted, tails, (0.0, 1.0))
    assert (low, high) == pytest.approx((0.87 - 0.0475, 0.87 + 0.0475))
    assert centred_interval(0.99, shifted, tails, (0.0, 1.0)) == pytest.approx((0.99 - 0.0475, 1.0))
    assert centred_interval(0.5, np.r_[shifted, np.nan], tails, (0.0, 1.0)) == pytest.approx((0.4525, 0.5475))
    assert np.isnan(centred_interval(0.5, np.full(5, np.nan), tails, (0.0, 1.0))).all()
    assert np.isnan(centred_interval(float("nan"), shifted, tails, (0.0, 1.0))).all()


def squares_through_random_nets(num_stimuli: int = 1000):
    """27 random two-layer ReLU nets (3 families of 9, each net a variant of its family's first
    layer) over synthetic squares: features like the demo's (16 non-negative dims, the family
    AUC over unlimited stimuli 0.92), where the AUC of 40 stimuli is much lower (0.77) and a
    resample's, lower still."""
    images = open_stimuli(f"synthetic:squares?n={num_stimuli}&size=16&square=3&count=2&seed=7")
    pixels = np.asarray(images.read(list(range(num_stimuli))), np.float32).reshape(num_stimuli, -1)
    rng = np.random.default_rng(0)
    scale = 1 / np.sqrt(pixels.shape[1])
    first = [rng.normal(size=(pixels.shape[1], 64)) * scale for _ in range(3)]
    features = []
    for family in range(3):
        for _ in range(9):
            hidden = np.maximum(pixels @ (2 * first[family] + rng.normal(size=first[family].shape) * scale), 0)
            features.append(np.maximum(hidden @ rng.normal(size=(64, 16)), 0).astype(np.float32))
    return np.stack(features), np.repeat(["a", "b", "c"], 9)


def test_intervals_cover_the_score_at_the_sets_size_where_percentile_ones_miss_it():
    features, families = squares_through_random_nets()
    rng = np.random.default_rng(1)
    draws = [np.sort(rng.choice(features.shape[1], SIZE, replace=False)) for _ in range(30)]
    sets = [compare_stimulus_sets(features, families, {"draw": chosen}, num_bootstrap=200, seed=s,
                                  num_permutations=10).sets["draw"] for s, chosen in enumerate(draws)]
    estimates = np.array([float(one.scores.auc) for one in sets])
    expected = estimates.mean()  # the family AUC of a 40-stimulus draw, as these draws estimate it
    covered = sum(one.low.auc <= expected <= one.high.auc for one in sets)
    percentile = np.array([np.percentile(one.replicates.auc, [2.5, 97.5]) for one in sets])
    percentile_covered = np.sum((percentile[:, 0] <= expected) & (expected <= percentile[:, 1]))
    held = np.sum((percentile[:, 0] <= estimates) & (estimates <= percentile[:, 1]))
    # 95% intervals: 30 of 30 covered here; the plain percentile intervals 6, and hold their estimate in 1.
    assert covered >= 25 and percentile_covered <= 18 and held <= 18, (covered, percentile_covered, held)


def test_a_set_may_bring_its_own_features():
    features = planted()
    probe = planted(seed=3)[:, :SIZE]  # another stimulus set of the same models, e.g. a synthetic probe
    result = compare_stimulus_sets(features, FAMILIES, {"pool": np.arange(SIZE), "probe": probe},
                                   baseline="pool", num_bootstrap=20, num_permutations=50)
    np.testing.assert_allclose(result.sets["probe"].similarity, ja.cka_matrix(probe), atol=2e-6)
    assert result.versus_baseline["probe"].common_draws


@pytest.mark.parametrize(("arguments", "message"), [
    ({"sets": {}}, "sets must map at least one name"),
    ({"baseline": "none"}, r"baseline 'none' is not one of the sets \['a'\]"),
    ({"num_bootstrap": 0}, "num_bootstrap must be a positive integer"),
    ({"confidence": 1.5}, r"confidence must lie in \(0, 1\)"),
    ({"sets": {"a": np.array([0, 1, 999])}}, "stimulus index 999 is outside"),
    ({"groups": ["conv"] * 7}, "one label per model"),
])
def test_bad_arguments_name_what_is_wrong(arguments, message):
    call = {"groups": FAMILIES, "sets": {"a": np.arange(SIZE)}, **arguments}
    with pytest.raises(ValueError, match=message):
        compare_stimulus_sets(planted(), call.pop("groups"), call.pop("sets"), num_bootstrap=call.pop(
            "num_bootstrap", 5), **call)


def test_random_sets_are_distinct_draws_of_one_size_outside_the_excluded():
    drawn = random_sets(100, 10, 3, seed=0, exclude=np.arange(20))
    assert list(drawn) == ["random_0", "random_1", "random_2"]
    for chosen in drawn.values():
        assert len(np.unique(chosen)) == 10 and chosen.min() >= 20
    assert not np.array_equal(drawn["random_0"], drawn["random_1"])
    with pytest.raises(ValueError, match="more than the 80 stimuli"):
        random_sets(100, 81, 1, exclude=np.arange(20))
