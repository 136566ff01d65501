"""Identifiability scores and model identification: float64 references written pair by pair,
scikit-learn, planted structure, a null that gives uniform p-values, bad input."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, silhouette_score

import jaxagree as ja
from jaxagree.identify import encode_groups


# References in float64, straight from the definitions (loops where that is clearest).
def pairs(s, groups):
    rows, cols = np.triu_indices(len(groups), 1)
    return np.asarray(s, np.float64)[rows, cols], groups[rows] == groups[cols]


def mann_whitney_auc(s, groups):
    """O(pairs**2): every within-group pair against every between-group pair, ties one half."""
    values, within = pairs(s, groups)
    wins = 0.0
    for w in values[within]:
        for b in values[~within]:
            wins += 1.0 if w > b else 0.5 if w == b else 0.0
    return wins / (within.sum() * (~within).sum())


def nearest_other(s, i):
    best = None
    for j in range(len(s)):
        if j != i and (best is None or s[i, j] > s[i, best]):  # strict: the lower index keeps a tie
            best = j
    return best


def knn_accuracy(s, groups):
    alone = [i for i in range(len(groups)) if (groups == groups[i]).sum() == 1]
    hits = [groups[nearest_other(s, i)] == groups[i] for i in range(len(groups)) if i not in alone]
    return np.mean(hits)


def conformity(s, groups):
    won = total = 0
    for i in range(len(groups)):
        for j in range(len(groups)):
            for k in range(len(groups)):
                if j != i and groups[j] == groups[i] and groups[k] != groups[i]:
                    total += 1
                    won += s[i, j] > s[i, k]
    return won / total


def random_case(seed, m, num_groups, decimals=1):
    """A symmetric similarity in [-0.2, 1] rounded to ``decimals`` (ties), groups with at least
    one pair within and one between; float32 values, as the kernels see them."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-0.2, 1.0, (m, m))
    s = np.round((a + a.T) / 2, decimals)
    np.fill_diagonal(s, 1.0)
    groups = rng.permutation(np.concatenate([[0, 0, 1], rng.integers(0, num_groups, m - 3)]))
    return s.astype(np.float32), groups


def check_against_references(result, s, groups):
    values, within = pairs(s, groups)
    np.testing.assert_allclose(float(result.auc), mann_whitney_auc(s, groups), atol=1e-6)
    np.testing.assert_allclose(float(result.auc), roc_auc_score(within, values), atol=1e-6)
    np.testing.assert_allclose(float(result.auprc), average_precision_score(within, values), atol=1e-6)
    silhouette = silhouette_score(1.0 - s.astype(np.float64), groups, metric="precomputed")
    np.testing.assert_allclose(float(result.silhouette), silhouette, atol=1e-5)
    np.testing.assert_allclose(float(result.conformity), conformity(s, groups), atol=1e-6)
    assert float(result.knn_accuracy) == pytest.approx(knn_accuracy(s, groups), abs=1e-6)


@settings(max_examples=max(5, settings.default.max_examples // 2))  # four sizes: four compilations
@given(seed=st.integers(0, 2**16), m=st.sampled_from([3, 5, 8, 14]), num_groups=st.integers(2, 4), decimals=st.sampled_from([1, 3]))
def test_scores_match_pair_by_pair_references_and_scikit_learn(seed, m, num_groups, decimals):
    s, groups = random_case(seed, m, num_groups, decimals)
    result = ja.identifiability(s, groups, num_permutations=50)
    check_against_references(result, s, groups)
    assert 1 / 51 - 1e-7 <= float(result.p_value) <= 1.0


def test_scores_of_300_models_match_scikit_learn_in_float64():
    s, groups = random_case(7, 300, 5, decimals=2)
    result = ja.identifiability(s, groups, num_permutations=10)
    values, within = pairs(s, groups)
    np.testing.assert_allclose(float(result.auc), roc_auc_score(within, values), atol=1e-6)
    np.testing.assert_allclose(float(result.auprc), average_precision_score(within, values), atol=1e-6)
    np.testing.assert_allclose(float(result.silhouette), silhouette_score(1.0 - s.astype(np.float64), groups,
                                                                          metric="precomputed"), atol=1e-5)


def planted_features(rng, families=3, architectures=2, seeds=2, stimuli=64, dim=16):
    """Each model: its family's features, turned by its architecture, plus seed noise."""
    features, family, architecture = [], [], []
    for f in range(families):
        base = rng.normal(size=(stimuli, dim))
        for a in range(architectures):
            arch = np.tanh(base @ (np.eye(dim) + 0.4 * rng.normal(size=(dim, dim))))
            for _ in range(seeds):
                features.append(arch + 0.1 * rng.normal(size=arch.shape))
                family.append(f"family{f}")
                architecture.append(f"family{f}-arch{a}")
    return np.stack(features).astype(np.float32), np.array(family), np.array(architecture)


def test_planted_family_structure_is_found_by_every_score():
    features, family, architecture = planted_features(np.random.default_rng(0))
    s = np.asarray(ja.cka_matrix(features))
    result = ja.identifiability(s, family, num_permutations=999)
    assert float(result.auc) > 0.99 and float(result.auprc) > 0.95 and float(result.conformity) > 0.95
    assert float(result.knn_accuracy) == 1.0
    assert float(result.silhouette) > 0.2
    # No shuffle of 3 x 4 models (1 in 5,775 keep the split) reaches AUC 1: p is its floor, 1 / (1 + 999).
    assert float(result.p_value) == pytest.approx(1 / 1000)
    check_against_references(result, s, family)
    found = ja.identify_models(s, family, architectures=architecture)
    assert float(found.group_rate) == 1.0 and float(found.architecture_rate) == 1.0
    assert (np.asarray(found.margin) > 0).all()
    # Each model's nearest is the other seed of its architecture.
    np.testing.assert_array_equal(architecture[np.asarray(found.nearest)], architecture)


def test_p_values_without_structure_are_uniform():
    """200 random symmetric matrices with random groups: a valid test gives P(p <= a) = a (up to
    the 1/100 steps of 99 shuffles). Fixed seeds: the same 200 p-values on every run."""
    p = np.array([float(ja.identifiability(*random_case(seed, 10, 3, decimals=6), num_permutations=99,
                                           seed=seed).p_value) for seed in range(200)])
    grid = np.linspace(0.05, 1.0, 20)
    ecdf = (p[:, None] <= grid + 1e-6).mean(0)
    # Kolmogorov-Smirnov at n=200: 0.115 is the 1% critical value; +0.01 for the steps of p.
    assert np.abs(ecdf - grid).max() < 0.125, dict(zip(grid.round(2), ecdf))
    assert 0.05 <= (p <= 0.1).mean() <= 0.16


def test_p_value_is_the_share_of_shuffles_that_reach_the_observed_auc():
    # 4 models, 2 + 2: a shuffle keeps the planted split with probability 8/24, where the AUC is
    # again 1; the other two splits give less. Shuffles that change group sizes would not give 1/3.
    s = np.array([[1, .9, .1, .2], [.9, 1, .3, .1], [.1, .3, 1, .8], [.2, .1, .8, 1]], np.float32)
    result = ja.identifiability(s, [0, 0, 1, 1], num_permutations=4000, seed=3)
    assert float(result.auc) == 1.0
    assert abs(float(result.p_value) - 1 / 3) < 0.03
    # Deterministic given the seed; another seed draws other shuffles.
    assert float(ja.identifiability(s, [0, 0, 1, 1], num_permutations=4000, seed=3).p_value) == float(result.p_value)
    assert float(ja.identifiability(s, [0, 0, 1, 1], num_permutations=4000, seed=4).p_value) != float(result.p_value)


def test_nearest_neighbour_ties_go_to_the_lower_index():
    # Model 0 is as similar to 1 (other group) as to 2 (its group): 1 wins, a miss.
    s = np.array([[1, .5, .5, .1], [.5, 1, .2, .9], [.5, .2, 1, .3], [.1, .9, .3, 1]], np.float32)
    found = ja.identify_models(s, [0, 1, 0, 1])
    assert int(found.nearest[0]) == 1 and float(found.same_group[0]) == 0.0 and float(found.margin[0]) == 0.0
    # Swap the labels of models 1 and 2: the same tie now goes to a sibling, a hit.
    found = ja.identify_models(s, [0, 0, 1, 1])
    assert int(found.nearest[0]) == 1 and float(found.same_group[0]) == 1.0
    assert float(ja.identifiability(s, [0, 1, 0, 1]).knn_accuracy) == pytest.approx(knn_accuracy(s, np.array([0, 1, 0, 1])))


def test_identify_models_matches_a_loop():
    s, groups = random_case(11, 13, 3, decimals=1)
    architectures = np.arange(13) % 5
    found = ja.identify_models(s, groups, architectures=architectures)
    for i in range(13):
        j = nearest_other(s, i)
        assert int(found.nearest[i]) == j
        siblings = [k for k in range(13) if k != i and groups[k] == groups[i]]
        others = [k for k in range(13) if groups[k] != groups[i]]
        if siblings:
            assert float(found.same_group[i]) == float(groups[j] == groups[i])
            assert float(found.margin[i]) == pytest.approx(s[i, siblings].max() - s[i, others].max(), abs=1e-6)
        else:
            assert np.isnan(float(found.same_group[i])) and np.isnan(float(found.margin[i]))
        shared = (architectures == architectures[i]).sum() > 1
        expected = float(architectures[j] == architectures[i]) if shared else np.nan
        np.testing.assert_equal(float(found.same_architecture[i]), expected)
    assert float(found.group_rate) == pytest.approx(float(ja.identifiability(s, groups).knn_accuracy))
    assert found.same_architecture is not None
    assert ja.identify_models(s, groups).architecture_rate is None


def test_a_model_alone_in_its_group():
    s, groups = random_case(5, 9, 2)
    groups = np.where(np.arange(9) == 4, 7, groups)  # model 4 alone in group 7
    result = ja.identifiability(s, groups, num_permutations=20)
    check_against_references(result, s, groups)  # knn leaves model 4 out; its silhouette is 0
    found = ja.identify_models(s, groups, architectures=np.arange(9))
    assert np.isnan(float(found.same_group[4])) and np.isnan(float(found.margin[4]))
    assert np.isnan(float(found.architecture_rate))  # no architecture has two models


@pytest.mark.parametrize("groups, match", [
    ([0, 0, 0, 0], "one group \\(0\\)"),
    (["a"] * 4, "one group \\('a'\\)"),
    ([0, 1, 2, 3], "alone in its group"),
    ([0, 0, 1], "one label per model \\(4 models\\)"),
    ([[0, 0], [1, 1]], "one label per model"),
    ([0.0, 0.0, 1.0, 1.0], "integer or string labels"),
])
def test_bad_groups(groups, match):
    s = np.eye(4, dtype=np.float32) + 0.1
    with pytest.raises(ValueError, match=match):
        ja.identifiability(s, groups)


def test_bad_architectures():
    s = np.eye(4, dtype=np.float32) + 0.1
    with pytest.raises(ValueError, match="architectures must have one label per model \\(4 models\\)"):
        ja.identify_models(s, [0, 0, 1, 1], architectures=["a", "b"])
    with pytest.raises(ValueError, match="one group"):
        ja.identify_models(s, [0, 0, 0, 0])


def symmetric_with(value, i=1, j=3, m=4):
    s = np.full((m, m), 0.5, np.float32)
    s[i, j] = s[j, i] = value
    return s


@pytest.mark.parametrize("similarity, match", [
    (np.ones((4, 3)), "square matrix \\[models, models\\], got shape \\(4, 3\\)"),
    (np.ones(4), "square matrix"),
    (np.ones((2, 4, 4)), "square matrix \\[models, models\\]"),
    (np.ones((2, 2)), "2 model\\(s\\)"),
    (np.ones((4, 4), bool), "real-valued"),
    (np.ones((4, 4), complex), "real-valued"),
    (symmetric_with(np.nan), "similarity\\[model 1, model 3\\] is nan"),
    (symmetric_with(np.inf), "similarity\\[model 1, model 3\\] is inf"),
    (np.triu(symmetric_with(0.9)), "not symmetric: similarity\\[model 0, model 1\\] = 0.5 but \\[model 1, model 0\\] = 0.0"),
])
def test_bad_similarity(similarity, match):
    with pytest.raises(ValueError, match=match):
        ja.identifiability(similarity, [0, 0, 1, 1])


def test_what_is_accepted_and_what_gives_nan():
    s, groups = random_case(2, 8, 2)
    reference = ja.identifiability(s, groups, num_permutations=30)
    noisy = s + np.triu(np.full_like(s, 5e-6), 1)  # asymmetric within the tolerance: the upper triangle is read
    diagonal = s.copy()
    np.fill_diagonal(diagonal, np.nan)  # the diagonal is never read
    for variant in (noisy, diagonal):
        result = ja.identifiability(variant, groups, num_permutations=30)
        np.testing.assert_allclose(np.array(result), np.array(reference), atol=1e-5)
    tie = np.full((4, 4), 0.5, np.float32)
    tie[2, 0] += 4e-6  # within the tolerance; the upper triangle's tie between models 1 and 2 stands
    assert int(ja.identify_models(tie, [0, 0, 1, 1]).nearest[0]) == 1
    above_one = s.copy()
    above_one[0, 1] = above_one[1, 0] = 1.5  # 1 - S < 0: only the silhouette is undefined
    result = ja.identifiability(above_one, groups, num_permutations=30)
    assert np.isnan(float(result.silhouette)) and np.isfinite(np.array(result)[[0, 1, 3, 4, 5]]).all()
    with pytest.raises(ValueError, match="num_permutations"):
        ja.identifiability(s, groups, num_permutations=0)
    with pytest.raises(ValueError, match="seed"):
        ja.identifiability(s, groups, seed=True)


def test_permuting_models_with_their_groups_changes_no_score():
    s, groups = random_case(3, 12, 3, decimals=6)  # no ties: the nearest neighbour does not depend on order
    order = np.random.default_rng(0).permutation(12)
    scores = ja.identifiability_scores(s, *groups_and_count(groups))
    moved = ja.identifiability_scores(s[np.ix_(order, order)], *groups_and_count(groups[order]))
    np.testing.assert_allclose(np.array(moved), np.array(scores), atol=1e-6)
    # Renaming the groups changes nothing, the p-value included.
    named = ja.identifiability(s, np.array(["vit", "cnn", "mlp"])[groups], num_permutations=200)
    np.testing.assert_array_equal(np.array(named), np.array(ja.identifiability(s, groups, num_permutations=200)))


def groups_and_count(groups):
    ids, names = encode_groups(groups, len(groups))
    return ids, len(names)


def test_a_stack_of_replicates_equals_one_at_a_time_and_runs_under_jit():
    stack = np.stack([random_case(seed, 10, 3)[0] for seed in range(5)])
    groups = random_case(0, 10, 3)[1]
    ids, count = groups_and_count(groups)
    stack[3, 2, 7] = stack[3, 7, 2] = np.nan  # a failed replicate scores NaN, the others do not notice
    batched = ja.identifiability_scores(stack, ids, count)
    assert all(field.shape == (5,) for field in batched)
    jitted = jax.jit(lambda x: ja.identifiability_scores(x, ids, count))(stack)
    found = ja.identify_models(stack, groups, architectures=np.arange(10) % 4)
    assert found.nearest.shape == (5, 10) and found.group_rate.shape == (5,)
    for r in range(5):
        one = np.array(ja.identifiability_scores(stack[r], ids, count))
        single = ja.identify_models(stack[r], groups, architectures=np.arange(10) % 4) if r != 3 else None
        if r == 3:
            assert np.isnan(np.array(batched)[:, r]).all() and np.isnan(float(found.group_rate[r]))
            continue
        np.testing.assert_allclose(np.array(batched)[:, r], one, atol=1e-6)
        np.testing.assert_allclose(np.array(jitted)[:, r], one, atol=1e-6)
        for field, value in zip(found, single):
            np.testing.assert_allclose(np.asarray(field)[r], np.asarray(value), atol=1e-6)
    # More group ids than groups used: an unused id is no group.
    np.testing.assert_allclose(np.array(ja.identifiability_scores(stack[0], ids, count + 2)),
                               np.array(ja.identifiability_scores(stack[0], ids, count)), atol=1e-6)


@pytest.mark.parametrize("ids, num_groups, match", [
    (np.array([0, 0, 1, 2]), 2, "\\[0, num_groups=2\\)"),
    (np.array([0, 0, 1]), 2, "group_ids must be integers \\[models\\] \\(4 models\\)"),
    (np.array([0.0, 0, 1, 1]), 2, "must be integers"),
    (np.array([0, 0, 0, 0]), 1, "one group"),
    (np.array([0, 0, 1, 1]), 0, "num_groups must be a positive integer"),
])
def test_bad_group_ids(ids, num_groups, match):
    with pytest.raises(ValueError, match=match):
        ja.identifiability_scores(np.eye(4, dtype=np.float32), ids, num_groups)


def test_a_non_symmetric_replicate_is_named():
    stack = np.stack([symmetric_with(0.9)] * 3)
    stack[2, 0, 3] = 0.1
    with pytest.raises(ValueError, match="replicate 2, model 0, model 3"):
        ja.identifiability_scores(stack, np.array([0, 0, 1, 1]), 2)
