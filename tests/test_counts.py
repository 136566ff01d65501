"""Count aggregation: reference, subsets, blocking, chunking, sharding, bad input."""

from unittest import mock

import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxagree as ja
from jaxagree.counts import _checks, _kernels, _plan, _run

from . import reference

STATS_KERNELS = ["dense", "sparse", "one-hot"]


def stats_kernel(name: str):
    """Force agreement_stats onto one of its kernels (they must agree exactly); "one-hot" counts
    one subset only, so with several subsets the cost model picks between the other two."""
    return mock.patch.object(_plan, "FORCE_METHOD", name)


@st.composite
def predictions(draw, min_models=2, max_models=12, max_stimuli=40, max_categories=9):
    num_categories = draw(st.integers(1, max_categories))
    shape = (draw(st.integers(min_models, max_models)), draw(st.integers(1, max_stimuli)))
    preds = draw(hnp.arrays(np.int32, shape, elements=st.integers(-1, num_categories - 1)))
    return preds, num_categories


@given(predictions())
def test_counts_match_reference(case):
    preds, num_categories = case
    got = np.asarray(ja.count_predictions(preds, num_categories=num_categories))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, reference.counts(preds, num_categories))


@pytest.mark.parametrize("kernel", STATS_KERNELS)
@settings(max_examples=max(5, settings.default.max_examples // 3))  # each example compiles
@given(case=predictions(), data=st.data())
def test_subset_counts_equal_counting_each_subset_alone(kernel, case, data):
    preds, num_categories = case
    num_models = preds.shape[0]
    num_subsets = data.draw(st.integers(1, 4))
    mask = data.draw(hnp.arrays(bool, (num_subsets, num_models)))
    mask[:, :2] = True  # every subset needs 2 models
    got = np.asarray(ja.count_predictions(preds, num_categories=num_categories, model_mask=mask))
    assert got.shape == (num_subsets, preds.shape[1], num_categories)
    for s in range(num_subsets):
        np.testing.assert_array_equal(got[s], reference.counts(preds[mask[s]], num_categories))
    with stats_kernel(kernel):
        stats = ja.agreement_stats(preds, num_categories=num_categories, model_mask=mask)
    for s in range(num_subsets):
        alone = ja.agreement_stats(preds[mask[s]], num_categories=num_categories)
        for field, expected in zip(stats, alone):
            np.testing.assert_array_equal(np.asarray(field)[s], np.asarray(expected))


@pytest.mark.parametrize("kernel", STATS_KERNELS)
@settings(max_examples=max(5, settings.default.max_examples // 2))  # each example compiles
@given(case=predictions())
def test_agreement_stats_equal_stats_of_the_dense_table(kernel, case):
    preds, num_categories = case
    table = reference.counts(preds, num_categories)
    with stats_kernel(kernel):
        stats = ja.agreement_stats(preds, num_categories=num_categories)
    np.testing.assert_array_equal(stats.n_raters, table.sum(1))
    np.testing.assert_array_equal(stats.sum_squares, (table**2).sum(1))
    np.testing.assert_array_equal(stats.category_totals, table.sum(0))


@pytest.mark.parametrize("kernel", STATS_KERNELS)
def test_small_blocks_equal_one_block(monkeypatch, kernel):
    """The block size is a memory knob only: many tiny blocks give the same answer."""
    monkeypatch.setattr(_plan, "FORCE_METHOD", kernel)
    rng = np.random.default_rng(1)
    preds = rng.integers(-1, 7, size=(9, 203)).astype(np.int32)
    mask = rng.random((3, 9)) < 0.7
    mask[:, :2] = True
    whole = ja.count_predictions(preds, num_categories=7, model_mask=mask)
    whole_stats = ja.agreement_stats(preds, num_categories=7, model_mask=mask)
    monkeypatch.setattr(_kernels, "BLOCK_CELLS", 3 * 7 * 5)  # 5 stimuli per block
    monkeypatch.setattr(_plan, "ONEHOT_BLOCK", 9 * 5)
    assert _kernels.stimuli_per_block(203, 21) == 5  # 203 = 7 * 29 has no divisor in [3, 5]: overlap
    np.testing.assert_array_equal(ja.count_predictions(preds, num_categories=7, model_mask=mask), whole)
    for a, b in zip(ja.agreement_stats(preds, num_categories=7, model_mask=mask), whole_stats):
        np.testing.assert_array_equal(a, b)


def test_chunks_beyond_int32_totals_merge_to_the_same_stats(monkeypatch):
    rng = np.random.default_rng(2)
    preds = rng.integers(-1, 5, size=(6, 101)).astype(np.int32)
    whole = ja.agreement_stats(preds, num_categories=5)
    monkeypatch.setattr(_run, "INT32_LIMIT", 6 * 10)  # chunks of 10 stimuli
    chunked = ja.agreement_stats(preds, num_categories=5)
    assert chunked.category_totals.dtype == np.int64
    for a, b in zip(chunked, whole):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(ja.fleiss_kappa(chunked), ja.fleiss_kappa(whole), rtol=1e-6)


def test_merge_stats_of_stimulus_batches_equals_one_run():
    rng = np.random.default_rng(3)
    preds = rng.integers(0, 4, size=(5, 60)).astype(np.int32)
    parts = [ja.agreement_stats(preds[:, s:s + 25], num_categories=4) for s in range(0, 60, 25)]
    merged = ja.merge_stats(parts)
    whole = ja.agreement_stats(preds, num_categories=4)
    for a, b in zip(merged, whole):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="at least one"):
        ja.merge_stats([])


@pytest.mark.parametrize("kernel", STATS_KERNELS)
@pytest.mark.parametrize("num_stimuli", [1, 4, 37, 400])
def test_sharded_over_4_devices_equals_one_device(devices, num_stimuli, kernel, monkeypatch):
    monkeypatch.setattr(_plan, "FORCE_METHOD", kernel)
    rng = np.random.default_rng(num_stimuli)
    preds = rng.integers(-1, 6, size=(7, num_stimuli)).astype(np.int32)
    mask = np.array([[1, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1]], bool)
    mesh = ja.stimulus_mesh(devices)
    assert mesh.devices.size == 4
    for model_mask in (None, mask):
        single = ja.count_predictions(preds, num_categories=6, model_mask=model_mask)
        sharded = ja.count_predictions(preds, num_categories=6, model_mask=model_mask, mesh=mesh)
        np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))
        single_stats = ja.agreement_stats(preds, num_categories=6, model_mask=model_mask)
        sharded_stats = ja.agreement_stats(preds, num_categories=6, model_mask=model_mask, mesh=mesh)
        for a, b in zip(sharded_stats, single_stats):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sharded_output_is_split_over_stimuli(devices):
    preds = np.zeros((3, 40), np.int32)
    counts = ja.count_predictions(preds, num_categories=2, mesh=ja.stimulus_mesh(devices))
    assert len(counts.sharding.device_set) == 4


def test_count_predictions_works_inside_jit():
    rng = np.random.default_rng(4)
    preds = rng.integers(-1, 5, size=(4, 30)).astype(np.int32)
    jitted = jax.jit(lambda p: ja.count_predictions(p, num_categories=5))
    np.testing.assert_array_equal(jitted(preds), reference.counts(preds, 5))


def test_block_size_prefers_a_divisor_of_the_stimuli():
    assert _kernels.stimuli_per_block(50_000, 1000) == 500  # 524 fit; 500 divides 50,000
    assert _kernels.stimuli_per_block(7, 10**9) == 1
    assert _kernels.stimuli_per_block(10, 1) == 10


def test_kernel_choice_follows_the_cost_model():
    few = _checks.raters_from_mask(None, 400)
    bins = _checks.raters_from_mask(np.arange(400)[None, :] % 10 == np.arange(10)[:, None], 400)
    kernel = _plan.stats_kernel
    assert kernel(few, 1000)[0] is _kernels.block_stats
    assert kernel(bins, 1000)[0] is _kernels.sparse_stats
    assert kernel(few, 10_000, 140.0)[0] is _kernels.sparse_stats  # the table sweep costs more
    assert kernel(few, 16, 16.0)[0] is _kernels.onehot_stats  # few categories: no scatter
    assert kernel(bins, 16, 10.0)[0] is _kernels.block_stats  # one-hot counts one subset only
    # Where one-hot stops paying: its cost grows with the categories, the dense table's hardly.
    boundary = next(c for c in range(2, 300) if kernel(few, c, float(c))[0] is not _kernels.onehot_stats)
    assert 16 < boundary < 100
    plan = _plan.plan_for(few, boundary - 1, 2**20, boundary - 1.0)
    assert plan.method == "one-hot" and plan.costs["one-hot"] <= plan.costs["dense table"]


def test_distinct_answers_change_the_block_size():
    """Many distinct answers per stimulus spread a block's scatter over many table lines: the
    block shrinks to stay in L1. Few distinct answers keep large blocks (fewer loop steps)."""
    few = _checks.raters_from_mask(None, 400)
    concentrated = _plan.plan_for(few, 1000, 50_000, 4.0)
    spread = _plan.plan_for(few, 1000, 50_000, 130.0)
    assert concentrated.method == spread.method == "dense table"
    assert spread.block_size * 1000 * 2 <= 2**15 < concentrated.block_size * 1000 * 2
    assert spread.costs["dense table"] > concentrated.costs["dense table"]


def test_distinct_answers_estimate_is_exact_on_a_full_sample():
    rng = np.random.default_rng(5)
    preds = rng.integers(-1, 30, size=(12, 50)).astype(np.int32)  # 50 <= 64: every stimulus sampled
    mask = rng.random((3, 12)) < 0.6
    mask[:, :2] = True
    table = reference.counts(preds, 30)
    assert _plan.stats_plan(preds, num_categories=30).distinct == pytest.approx((table > 0).sum(1).mean())
    per_subset = np.mean([(reference.counts(preds[m], 30) > 0).sum(1).mean() for m in mask])
    plan = _plan.stats_plan(preds, num_categories=30, model_mask=mask)
    assert plan.distinct == pytest.approx(per_subset)


def test_pieces_split_large_work_over_the_cores(monkeypatch):
    monkeypatch.setattr(_plan, "num_cores", lambda: 2)
    big = np.zeros((400, 50_000), np.int32)
    assert _plan.stats_plan(big, num_categories=1000).pieces == 2
    assert _plan.stats_plan(big[:, :100], num_categories=1000).pieces == 1  # too little work
    mesh_plan = _plan.stats_plan(big[:, :4000], num_categories=1000, mesh=ja.stimulus_mesh(jax.devices()[:1]))
    assert mesh_plan.pieces == 1  # a mesh's devices split the stimuli instead


@pytest.mark.parametrize("kernel", STATS_KERNELS)
@settings(max_examples=max(5, settings.default.max_examples // 3))  # each example compiles
@given(case=predictions(max_stimuli=60), data=st.data())
def test_every_kernel_block_size_and_piece_count_equals_the_reference(kernel, case, data):
    """Each kernel, at any block size (overlapping last blocks included) and any number of
    concurrent stimulus pieces, equals the float64 NumPy reference, with and without a mask."""
    preds, num_categories = case
    num_models, num_stimuli = preds.shape
    mask = None
    if data.draw(st.booleans()):  # one-hot counts one subset: with more, the cost model picks
        mask = data.draw(hnp.arrays(bool, (data.draw(st.integers(1, 3)), num_models)))
        mask[:, :2] = True
    raters = _checks.raters_from_mask(mask, num_models)
    with stats_kernel(kernel):
        plan = _plan.plan_for(raters, num_categories, num_stimuli, float("nan"))
    pieces = data.draw(st.integers(1, min(3, num_stimuli)))
    size = -(-num_stimuli // pieces)
    block = data.draw(st.integers(1, size))  # a piece's last block overlaps unless block divides it
    plan = plan._replace(block_size=block, pieces=pieces)
    preds_device = jax.numpy.asarray(preds)
    if pieces > 1:
        stats, invalid = _run._count_pieces(plan, preds_device, raters, num_categories)
    else:
        stats, invalid = _run._count(plan.kernel, preds_device, raters, num_categories, None, block)
    assert int(invalid) == 0
    for s, members in enumerate(np.ones((1, num_models), bool) if mask is None else mask):
        table = reference.counts(preds[members], num_categories).astype(np.float64)
        got = stats if mask is None else jax.tree.map(lambda x: x[s], stats)
        np.testing.assert_array_equal(got.n_raters, table.sum(1))
        np.testing.assert_array_equal(got.sum_squares, (table**2).sum(1))
        np.testing.assert_array_equal(got.category_totals, table.sum(0))


@pytest.mark.parametrize("kernel", STATS_KERNELS)
def test_out_of_range_labels_are_caught_by_every_kernel_and_piece(kernel, monkeypatch):
    monkeypatch.setattr(_plan, "FORCE_METHOD", kernel)
    monkeypatch.setattr(_plan, "num_cores", lambda: 2)
    monkeypatch.setattr(_plan, "_MIN_SPLIT_NS", 1e-9)
    monkeypatch.setattr(_kernels, "BLOCK_CELLS", 7 * 10)  # blocks of at most 10 stimuli
    monkeypatch.setattr(_plan, "ONEHOT_BLOCK", 5 * 10)
    preds = np.zeros((5, 101), np.int32)
    preds[3, 99] = 7
    assert _plan.stats_plan(preds, num_categories=7).pieces == 2
    with pytest.raises(ValueError, match=r"predictions\[model 3, stimulus 99\] = 7"):
        ja.agreement_stats(preds, num_categories=7)


def test_wide_kernel_from_46341_models_in_the_largest_subset():
    """sum_j T_ij**2 reaches 46,341**2 > 2**31 - 1 only from 46,341 raters on one stimulus."""
    kernel = _plan.stats_kernel
    assert kernel(_checks.raters_from_mask(None, 46_340), 3)[0] is _kernels.block_stats
    assert kernel(_checks.raters_from_mask(None, 46_341), 3)[0] is _kernels.wide_block_stats
    halves = np.arange(2 * 46_340)[None, :] % 2 == np.arange(2)[:, None]  # 92,680 raters, 46,340 per subset
    assert kernel(_checks.raters_from_mask(halves, 2 * 46_340), 3)[0] is _kernels.block_stats
    halves[0, 1] = True
    assert kernel(_checks.raters_from_mask(halves, 2 * 46_340), 3)[0] is _kernels.wide_block_stats


def test_more_than_int16_raters_use_exact_int32_tables():
    preds = np.zeros((2**15 + 3, 2), np.int32)
    got = ja.count_predictions(preds, num_categories=2)
    np.testing.assert_array_equal(got, [[2**15 + 3, 0], [2**15 + 3, 0]])


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preds, match",
    [
        (np.array([[0, 1], [5, 0]]), r"predictions\[model 1, stimulus 0\] = 5 is outside \[-1, num_categories=5\)"),
        (np.array([[0, -2], [1, 0]]), r"predictions\[model 0, stimulus 1\] = -2"),
        (np.array([[0.0, 1.0], [1.0, 0.0]]), "integer array"),
        (np.array([[0, 1]]), "1 model"),
        (np.zeros((3, 0), int), "no stimuli"),
        (np.array([0, 1, 2]), r"shape \[models, stimuli\]"),
    ],
)
def test_bad_predictions_name_the_culprit(preds, match):
    with pytest.raises(ValueError, match=match):
        ja.count_predictions(preds, num_categories=5)
    with pytest.raises(ValueError, match=match):
        ja.agreement_stats(preds, num_categories=5)


@pytest.mark.parametrize("num_categories", [0, -3, 2.5, True])
def test_bad_num_categories(num_categories):
    with pytest.raises(ValueError, match="num_categories must be a positive integer"):
        ja.count_predictions(np.zeros((2, 3), int), num_categories=num_categories)


@pytest.mark.parametrize(
    "mask, match",
    [
        (np.ones((2, 4), int), "bool"),
        (np.ones((2, 5), bool), "model_mask has 5 models but predictions has 4"),
        (np.array([[1, 1, 0, 0], [0, 0, 0, 1]], bool), "model_mask row 1 selects 1 model"),
        (np.ones(4, bool), r"shape \[subsets, models\]"),
        (np.ones((0, 4), bool), "no subsets"),
    ],
)
def test_bad_model_mask(mask, match):
    with pytest.raises(ValueError, match=match):
        ja.count_predictions(np.zeros((4, 3), int), num_categories=2, model_mask=mask)


def test_int64_values_beyond_int32_are_not_wrapped():
    preds = np.array([[0, 1], [2**32 + 1, 0]], np.int64)  # would wrap to 1 in int32
    with pytest.raises(ValueError, match=r"predictions\[model 1, stimulus 0\] = 4294967297"):
        ja.agreement_stats(preds, num_categories=3)
    with pytest.raises(ValueError, match=r"= 4294967297"):
        ja.count_predictions(np.array([[0, 1], [2**32 + 1, 0]], np.uint64), num_categories=3)
