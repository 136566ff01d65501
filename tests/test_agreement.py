"""Agreement (Eq. 1), Fleiss' kappa, contrastive stimuli and error consistency."""

from fractions import Fraction

import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxagree as ja
from jaxagree import stats as stats_module

from . import reference
from .test_counts import predictions

# --- published values ------------------------------------------------------------------------

# Fleiss (1971): 30 patients, 6 psychiatrists, 5 diagnoses (as in statsmodels' tests, whose
# published value from R's irr::kappam.fleiss is 0.4302445).
FLEISS_1971_DIAGNOSES = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
])  # [patients, raters], diagnoses 1..5

# Wikipedia's worked example (statsmodels' test table): 10 subjects, 14 raters, 5 categories,
# with its published per-subject P_i.
WIKIPEDIA_TABLE = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])
WIKIPEDIA_P_I = [1.000, 0.253, 0.308, 0.440, 0.330, 0.462, 0.242, 0.176, 0.286, 0.286]


def test_fleiss_1971_diagnoses_kappa_0_4302():
    preds = FLEISS_1971_DIAGNOSES.T - 1  # [raters, patients], categories 0..4
    counts = ja.count_predictions(preds, num_categories=5)
    np.testing.assert_allclose(float(ja.fleiss_kappa(counts)), 0.4302445, atol=1e-6)
    np.testing.assert_allclose(
        float(ja.fleiss_kappa(ja.agreement_stats(preds, num_categories=5))), 0.4302445, atol=1e-6
    )


def test_wikipedia_example_kappa_0_210_and_p_i():
    np.testing.assert_allclose(float(ja.fleiss_kappa(WIKIPEDIA_TABLE)), 0.20993, atol=1e-5)
    np.testing.assert_allclose(ja.per_stimulus_agreement(WIKIPEDIA_TABLE), WIKIPEDIA_P_I, atol=5e-4)


def test_raters_varying_per_stimulus_worked_by_hand():
    """The paper's rule: P_bar is the plain mean of Eq. 1 over stimuli with 2 or more raters;
    p_j pools all ratings, the single-rater stimulus's too. Weighting P_bar by rater pairs
    (16/40) or leaving the single rating out of p_j (P_e = 17/49) would give other values."""
    F = Fraction
    table = np.array([[3, 1, 0], [0, 2, 0], [1, 1, 1], [2, 0, 3], [1, 0, 0], [0, 0, 0]])
    # Eq. 1 by hand, (sum_j T_ij^2 - n_i) / (n_i (n_i - 1)):
    p = [F(9 + 1 - 4, 4 * 3), F(4 - 2, 2 * 1), F(1 + 1 + 1 - 3, 3 * 2), F(4 + 9 - 5, 5 * 4)]
    assert p == [F(1, 2), F(1), F(0), F(2, 5)]  # stimuli 4 (1 rater) and 5 (none): undefined
    p_bar = sum(p) / 4
    assert p_bar == F(19, 40)
    # Category shares over all 15 ratings: 7, 4 and 4 (the single rating of stimulus 4 counts).
    p_e = F(7, 15) ** 2 + F(4, 15) ** 2 + F(4, 15) ** 2
    assert p_e == F(9, 25)
    fleiss = (p_bar - p_e) / (1 - p_e)
    randolph = (p_bar - F(1, 3)) / (1 - F(1, 3))
    assert (fleiss, randolph) == (F(23, 128), F(17, 80))

    np.testing.assert_allclose(ja.per_stimulus_agreement(table), [*map(float, p), np.nan, np.nan], atol=1e-7)
    preds = np.array([[0, 1, 0, 0, 0, -1], [0, 1, 1, 0, -1, -1], [0, -1, 2, 2, -1, -1],
                      [1, -1, -1, 2, -1, -1], [-1, -1, -1, 2, -1, -1]])  # the same counts as predictions
    np.testing.assert_array_equal(ja.count_predictions(preds, num_categories=3), table)
    kappa = jax.jit(ja.fleiss_kappa, static_argnames="method")
    for source in (table, ja.agreement_stats(preds, num_categories=3)):
        np.testing.assert_allclose(float(kappa(source)), float(fleiss), rtol=0, atol=1e-7)
        np.testing.assert_allclose(float(kappa(source, method="randolph")), float(randolph), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "table, fleiss, randolph",
    [
        # Randolph's online calculator, as quoted in statsmodels' tests.
        ([[7, 1], [3, 5]], 0.161905, 0.214286),
        ([[6, 1, 0], [0, 7, 0]], 0.708333, 0.785714),
        ([[7, 0], [0, 7]], 1.0, 1.0),
        ([[7, 0], [7, 0]], np.nan, 1.0),  # all ratings in one category: fixed-marginal kappa undefined
    ],
)
def test_randolph_examples(table, fleiss, randolph):
    table = np.array(table)
    np.testing.assert_allclose(float(ja.fleiss_kappa(table)), fleiss, atol=6e-6)
    np.testing.assert_allclose(float(ja.fleiss_kappa(table, method="randolph")), randolph, atol=6e-6)


def test_matches_statsmodels_with_constant_raters():
    statsmodels = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 6, size=(15, 300))
    table, _ = statsmodels.aggregate_raters(preds.T, n_cat=6)
    for method in ("fleiss", "randolph"):
        expected = statsmodels.fleiss_kappa(table, method=method)
        np.testing.assert_allclose(
            float(ja.fleiss_kappa(ja.count_predictions(preds, num_categories=6), method=method)),
            expected, atol=1e-6,
        )


# --- float64 reference on random inputs --------------------------------------------------------


@settings(max_examples=max(5, settings.default.max_examples // 2))  # each example compiles
@given(predictions(), st.sampled_from(["fleiss", "randolph"]))
def test_agreement_and_kappa_match_float64_reference(case, method):
    """Raters vary per stimulus (random -1 entries), including stimuli with 0 or 1 rater."""
    preds, num_categories = case
    table = reference.counts(preds, num_categories)
    expected_agreement = reference.agreement(table)
    expected_kappa = reference.kappa(table, method)
    for source in (ja.count_predictions(preds, num_categories=num_categories),
                   ja.agreement_stats(preds, num_categories=num_categories)):
        agreement = np.asarray(ja.per_stimulus_agreement(source))
        np.testing.assert_allclose(agreement, expected_agreement, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(float(ja.fleiss_kappa(source, method=method)), expected_kappa, rtol=1e-5, atol=1e-6)


def test_kappa_on_50000_stimuli_keeps_float32_accuracy():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 50, 50_000)
    preds = np.where(rng.random((30, 50_000)) < 0.6, labels, rng.integers(0, 50, (30, 50_000)))
    preds[rng.random(preds.shape) < 0.05] = -1
    table = np.zeros((50_000, 50), np.int64)
    for row in preds:
        answered = row >= 0
        np.add.at(table, (np.flatnonzero(answered), row[answered]), 1)
    stats = ja.agreement_stats(preds, num_categories=50)
    np.testing.assert_allclose(float(ja.fleiss_kappa(stats)), reference.kappa(table), rtol=2e-6)


@settings(max_examples=max(5, settings.default.max_examples // 2))  # each example compiles
@given(predictions(max_stimuli=30), st.data())
def test_batched_tables_equal_one_at_a_time(case, data):
    preds, num_categories = case
    mask = data.draw(hnp.arrays(bool, (3, preds.shape[0])))
    mask[:, :2] = True
    counts = ja.count_predictions(preds, num_categories=num_categories, model_mask=mask)
    kappas = np.asarray(ja.fleiss_kappa(counts))
    agreements = np.asarray(ja.per_stimulus_agreement(counts))
    for s in range(3):
        table = reference.counts(preds[mask[s]], num_categories)
        np.testing.assert_allclose(kappas[s], reference.kappa(table), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(agreements[s], reference.agreement(table), rtol=1e-6, atol=1e-7)


# --- invariants --------------------------------------------------------------------------------


@settings(max_examples=max(5, settings.default.max_examples // 2))  # each example compiles
@given(predictions(), st.randoms(use_true_random=False))
def test_invariants(case, rnd):
    """Agreement in [0, 1] (NaN only below 2 raters); invariant to permuting models, categories
    and stimuli."""
    preds, num_categories = case
    counts = ja.count_predictions(preds, num_categories=num_categories)
    agreement = np.asarray(ja.per_stimulus_agreement(counts))
    n = (preds >= 0).sum(0)
    assert np.array_equal(np.isnan(agreement), n < 2)
    defined = agreement[~np.isnan(agreement)]
    assert ((defined >= 0) & (defined <= 1)).all()
    kappa = float(ja.fleiss_kappa(counts))

    models = np.array(rnd.sample(range(preds.shape[0]), preds.shape[0]))
    stimuli = np.array(rnd.sample(range(preds.shape[1]), preds.shape[1]))
    relabel = np.array(rnd.sample(range(num_categories), num_categories))
    relabelled = np.where(preds >= 0, relabel[np.maximum(preds, 0)], -1)

    np.testing.assert_array_equal(ja.count_predictions(preds[models], num_categories=num_categories), counts)
    np.testing.assert_allclose(ja.per_stimulus_agreement(ja.count_predictions(relabelled, num_categories=num_categories)), agreement, rtol=1e-6)
    permuted = ja.count_predictions(preds[:, stimuli], num_categories=num_categories)
    np.testing.assert_allclose(ja.per_stimulus_agreement(permuted), agreement[stimuli], rtol=1e-6)
    for other in (permuted, ja.count_predictions(relabelled, num_categories=num_categories)):
        np.testing.assert_allclose(float(ja.fleiss_kappa(other)), kappa, rtol=1e-5, atol=1e-6)


def test_kappa_kernels_work_inside_jit():
    preds = FLEISS_1971_DIAGNOSES.T - 1
    fn = jax.jit(lambda p: ja.fleiss_kappa(ja.count_predictions(p, num_categories=5)))
    np.testing.assert_allclose(float(fn(preds)), 0.4302445, atol=1e-6)


def test_no_stimulus_with_two_raters_gives_nan_kappa():
    preds = np.array([[0, -1, 1], [-1, 1, -1]])
    assert np.isnan(float(ja.fleiss_kappa(ja.count_predictions(preds, num_categories=2))))


@pytest.mark.parametrize(
    "counts, match",
    [
        (np.array([[1.0, 2.0]]), "integer"),
        (np.array([[1, -1]]), "non-negative"),
        (np.array([1, 2]), r"shape \[\.\.\., stimuli, categories\]"),
        (np.zeros((0, 3), int), "empty"),
    ],
)
def test_bad_counts(counts, match):
    with pytest.raises(ValueError, match=match):
        ja.per_stimulus_agreement(counts)
    with pytest.raises(ValueError, match=match):
        ja.fleiss_kappa(counts)


def test_unknown_kappa_method():
    with pytest.raises(ValueError, match="method must be 'fleiss' or 'randolph', got 'cohen'"):
        ja.fleiss_kappa(WIKIPEDIA_TABLE, method="cohen")


# --- many raters: sum_j T_ij**2 beyond int32 from 46,341 raters on ------------------------------

# The last narrow count, the first wide one, the issue's example, a crowd.
MANY_RATERS = [46_340, 46_341, 50_000, 10**6]


def many_raters(n: int) -> np.ndarray:
    """Count table of 6 stimuli: 5 rated by n raters (unanimous, all but one, split in two and in
    three, one vote against the rest) and one by 3 raters."""
    return np.array([
        [n, 0, 0], [n - 1, 1, 0], [n // 2, n - n // 2, 0], [n // 3, n // 3, n - 2 * (n // 3)], [1, 0, n - 1],
        [2, 1, 0],
    ])


def predictions_of(table: np.ndarray, seed: int = 0) -> np.ndarray:
    """``[raters, stimuli]`` predictions whose counts are ``table`` (-1 where a stimulus has fewer
    raters than the most rated one), each stimulus's raters in random order."""
    rng = np.random.default_rng(seed)
    raters = int(table.sum(1).max())
    columns = []
    for row in table:
        column = np.repeat(np.arange(len(row)), row)
        columns.append(rng.permutation(np.concatenate([column, np.full(raters - len(column), -1)])))
    return np.stack(columns, axis=1).astype(np.int32)


def assert_matches_reference(agreement, kappas, table):
    """Against float64: agreement to 2e-7, kappa to 5e-7 (wide statistics round sum_j T_ij**2 to
    float32, ~1e-7 relative)."""
    np.testing.assert_allclose(np.asarray(agreement), reference.agreement(table), rtol=0, atol=2e-7)
    for method, kappa in kappas.items():
        np.testing.assert_allclose(float(kappa), reference.kappa(table, method), rtol=0, atol=5e-7)


def test_the_issues_example_50000_unanimous_raters():
    np.testing.assert_allclose(np.asarray(ja.per_stimulus_agreement([[50_000, 0]])), [1.0], atol=1e-7)
    np.testing.assert_allclose(float(ja.fleiss_kappa([[50_000, 0], [0, 50_000]])), 1.0, atol=1e-7)


@pytest.mark.parametrize("n", MANY_RATERS)
def test_many_raters_in_a_count_table_match_float64(n):
    table = many_raters(n)
    wide = n >= 46_341
    assert stats_module.table_stats(table).sum_squares.dtype == (np.float32 if wide else np.int32)
    # Outside jit the table's values choose; inside, narrow and wide are chosen per stimulus.
    for table_in in (table, jax.numpy.asarray(table, jax.numpy.int32)):
        kappas = {m: ja.fleiss_kappa(table_in, method=m) for m in ("fleiss", "randolph")}
        assert_matches_reference(ja.per_stimulus_agreement(table_in), kappas, table)
    jitted = jax.jit(lambda t: (ja.per_stimulus_agreement(t), ja.fleiss_kappa(t), ja.fleiss_kappa(t, method="randolph")))
    agreement, fleiss, randolph = jitted(jax.numpy.asarray(table, jax.numpy.int32))
    assert_matches_reference(agreement, {"fleiss": fleiss, "randolph": randolph}, table)
    np.testing.assert_array_equal(agreement, ja.per_stimulus_agreement(table))  # jit changes nothing


@pytest.mark.parametrize("n", MANY_RATERS)
def test_many_raters_through_predictions_match_float64(n):
    table = many_raters(n)
    preds = predictions_of(table)
    wide = n >= 46_341
    stats = ja.agreement_stats(preds, num_categories=3)
    assert stats.sum_squares.dtype == (np.float32 if wide else np.int32)
    np.testing.assert_array_equal(stats.n_raters, table.sum(1))
    np.testing.assert_allclose(stats.sum_squares, (table.astype(np.float64) ** 2).sum(1), rtol=1e-7 if wide else 0)
    counts = ja.count_predictions(preds, num_categories=3)
    np.testing.assert_array_equal(counts, table)
    for source in (stats, counts):
        kappas = {m: ja.fleiss_kappa(source, method=m) for m in ("fleiss", "randolph")}
        assert_matches_reference(ja.per_stimulus_agreement(source), kappas, table)

    def from_predictions(p):
        stats = ja.agreement_stats(p, num_categories=3)
        return ja.per_stimulus_agreement(stats), ja.fleiss_kappa(stats), ja.fleiss_kappa(ja.count_predictions(p, num_categories=3))

    agreement, kappa, kappa_of_counts = jax.jit(from_predictions)(preds)
    assert_matches_reference(agreement, {"fleiss": kappa}, table)
    assert_matches_reference(agreement, {"fleiss": kappa_of_counts}, table)


def test_a_large_subset_makes_every_subset_wide_and_each_stays_right():
    table = many_raters(50_000)
    preds = predictions_of(table)
    mask = np.zeros((2, preds.shape[0]), bool)
    mask[0] = True
    mask[1, :200] = True
    stats = ja.agreement_stats(preds, num_categories=3, model_mask=mask)
    assert stats.sum_squares.dtype == np.float32
    few = np.stack([np.bincount(column[column >= 0], minlength=3) for column in preds[:200].T])
    for s, expected_table in enumerate((table, few)):
        agreement = np.asarray(ja.per_stimulus_agreement(stats))[s]
        assert_matches_reference(agreement, {"fleiss": np.asarray(ja.fleiss_kappa(stats))[s]}, expected_table)


@pytest.mark.parametrize(
    "counts, match",
    [
        (np.array([[2**31 - 1, 1]]), r"counts\[0, :\] sums to 2,147,483,648 raters; at most 2,147,483,647"),
        (np.array([[3, 1], [2**32 + 5, 1]]), r"counts\[1, 0\] = 4,294,967,301 raters; at most 2,147,483,647"),
        (np.array([[[1, 2]], [[2**30, 2**30]]], np.uint32), r"counts\[1, 0, :\] sums to 2,147,483,648 raters"),
        (np.array([[2**31 - 1, 2**31 - 1]], np.uint32), r"counts\[0, :\] sums to 4,294,967,294 raters"),
    ],
)
def test_more_raters_than_int32_holds_is_a_clear_error(counts, match):
    for table in (counts, jax.numpy.asarray(counts) if counts.dtype == np.uint32 else counts):
        with pytest.raises(ValueError, match=match):
            ja.per_stimulus_agreement(table)
        with pytest.raises(ValueError, match=match):
            ja.fleiss_kappa(table)


def test_under_jit_more_raters_than_int32_holds_gives_nan_not_a_wrapped_value():
    table = np.array([[2**31, 1], [3, 4], [2**32 - 1, 5], [2**31 - 1, 0]], np.uint32)
    agreement = np.asarray(jax.jit(ja.per_stimulus_agreement)(jax.numpy.asarray(table)))
    np.testing.assert_allclose(agreement, [np.nan, reference.agreement(table[1:2])[0], np.nan, 1.0], atol=1e-7)
    assert np.isnan(float(jax.jit(ja.fleiss_kappa)(jax.numpy.asarray(table))))


def test_up_to_2_31_minus_1_raters_and_category_totals_beyond_int32():
    table = np.array([[2**30, 2**29], [2**29, 2**30], [2**30, 2**30 - 1], [2**31 - 1, 0]])
    stats = stats_module.table_stats(table)
    assert stats.category_totals.dtype == np.int64  # 2**32 + ... ratings in category 0
    np.testing.assert_array_equal(stats.category_totals, table.sum(0))
    kappas = {m: ja.fleiss_kappa(table, method=m) for m in ("fleiss", "randolph")}
    assert_matches_reference(ja.per_stimulus_agreement(table), kappas, table)
    agreement, kappa = jax.jit(lambda t: (ja.per_stimulus_agreement(t), ja.fleiss_kappa(t)))(jax.numpy.asarray(table, jax.numpy.int32))
    assert_matches_reference(agreement, {"fleiss": kappa}, table)


def test_merging_narrow_and_wide_stats_gives_wide_stats():
    few = np.array([[3, 1, 0], [0, 2, 2]])
    merged = ja.merge_stats([stats_module.table_stats(few), stats_module.table_stats(many_raters(50_000))])
    assert merged.sum_squares.dtype == np.float32
    table = np.concatenate([few, many_raters(50_000)])
    assert_matches_reference(ja.per_stimulus_agreement(merged), {"fleiss": ja.fleiss_kappa(merged)}, table)


# --- contrastive stimuli -----------------------------------------------------------------------


def test_contrastive_lowest_first_ties_by_index_nan_never():
    agreement = np.array([0.5, np.nan, 0.1, 0.5, 0.1, 0.9, np.nan, 0.1])
    np.testing.assert_array_equal(ja.contrastive_stimuli(agreement, 3), [2, 4, 7])
    np.testing.assert_array_equal(ja.contrastive_stimuli(agreement, 5), [2, 4, 7, 0, 3])
    np.testing.assert_array_equal(ja.contrastive_stimuli(agreement, 6), [2, 4, 7, 0, 3, 5])


@given(hnp.arrays(np.float32, (3, 25), elements=st.one_of(st.just(np.nan), st.sampled_from([0.0, 0.25, 0.5, 1.0]))), st.integers(1, 25))
def test_contrastive_matches_a_stable_sort(agreement, k):
    defined = (~np.isnan(agreement)).sum(1).min()
    if k > defined:
        with pytest.raises(ValueError, match=f"k={k} is larger than the {defined} stimuli with an agreement value"):
            ja.contrastive_stimuli(agreement, k)
        return
    got = np.asarray(ja.contrastive_stimuli(agreement, k))
    expected = np.argsort(np.where(np.isnan(agreement), np.inf, agreement), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("k", [0, -1, 2.0, None])
def test_contrastive_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ja.contrastive_stimuli(np.array([0.1, 0.2]), k)


def test_contrastive_needs_float_agreement():
    with pytest.raises(ValueError, match="float"):
        ja.contrastive_stimuli(np.array([1, 2, 3]), 1)


# --- error consistency -------------------------------------------------------------------------


@given(hnp.arrays(bool, st.tuples(st.integers(2, 8), st.integers(1, 30))))
def test_error_consistency_matches_geirhos_formula(correct):
    got = np.asarray(ja.error_consistency(correct))
    expected = reference.error_consistency(correct)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got, got.T)
    defined = ~np.isnan(np.diag(got))
    np.testing.assert_array_equal(np.diag(got)[defined], 1.0)


def test_error_consistency_known_values():
    # Identical error patterns -> 1; exactly opposite -> -1; independent-by-construction -> 0.
    a = np.array([1, 1, 0, 0], bool)
    correct = np.stack([a, a, ~a, np.array([1, 0, 1, 0], bool)])
    got = np.asarray(ja.error_consistency(correct))
    np.testing.assert_allclose(got[0, 1], 1.0)
    np.testing.assert_allclose(got[0, 2], -1.0)
    np.testing.assert_allclose(got[0, 3], 0.0, atol=1e-7)


@pytest.mark.parametrize(
    "correct, match",
    [
        (np.ones((3, 4), int), "bool"),
        (np.ones((1, 4), bool), "1 model"),
        (np.ones((3, 0), bool), "no stimuli"),
        (np.ones(4, bool), r"shape \[models, stimuli\]"),
    ],
)
def test_error_consistency_bad_input(correct, match):
    with pytest.raises(ValueError, match=match):
        ja.error_consistency(correct)


def test_error_consistency_near_zero_does_not_cancel():
    # A model right once against one always wrong: c_obs == c_exp exactly, so kappa is exactly 0.
    correct = np.zeros((2, 30), bool)
    correct[0, 0] = True
    got = np.asarray(ja.error_consistency(correct))
    assert got[0, 1] == 0.0 and got[1, 0] == 0.0
    assert got[0, 0] == 1.0 and np.isnan(got[1, 1])
