"""Linear CKA: float64 reference, invariances, all-pairs matrix, tiling, bad input."""

import warnings

import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

import jaxagree as ja
from jaxagree.cka import plan


# Kornblith et al.'s reference (google-research/representation_similarity), in float64.
def _centre_gram(gram: np.ndarray, unbiased: bool) -> np.ndarray:
    gram = gram.astype(np.float64).copy()
    n = gram.shape[0]
    if unbiased:
        np.fill_diagonal(gram, 0)
        means = gram.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = gram.mean(0)
        means -= means.mean() / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def reference_cka(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    gx, gy = _centre_gram(x @ x.T, debiased), _centre_gram(y @ y.T, debiased)
    return float((gx * gy).sum() / (np.linalg.norm(gx) * np.linalg.norm(gy)))


def related(rng, n=60, dx=12, dy=20, noise=0.5, offset=0.0):
    x = rng.normal(size=(n, dx))
    y = np.tanh(x @ rng.normal(size=(dx, dy))) + noise * rng.normal(size=(n, dy))
    return x + offset, y + offset


@pytest.mark.parametrize("debiased", [False, True])
@settings(max_examples=max(5, settings.default.max_examples // 2))  # each example compiles
@given(
    n=st.integers(4, 40), dx=st.integers(1, 12), dy=st.integers(1, 12), noise=st.floats(0.05, 3.0),
    seed=st.integers(0, 2**16),
)
def test_linear_cka_matches_float64_reference(debiased, n, dx, dy, noise, seed):
    x, y = related(np.random.default_rng(seed), n, dx, dy, noise)
    np.testing.assert_allclose(float(ja.linear_cka(x, y, debiased=debiased)), reference_cka(x, y, debiased), atol=2e-5)


@pytest.mark.parametrize("debiased", [False, True])
def test_large_feature_means_stay_accurate_in_float32(debiased):
    """Real activations often have means far larger than their spread."""
    x, y = related(np.random.default_rng(0), n=200, dx=32, dy=48)
    expected = reference_cka(x, y, debiased)
    got = float(ja.linear_cka((x + 1e4).astype(np.float32), (y - 3e3).astype(np.float32), debiased=debiased))
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariances(debiased):
    """Orthogonal transforms, isotropic scaling and feature permutations leave CKA unchanged."""
    rng = np.random.default_rng(1)
    x, y = related(rng, n=80, dx=10, dy=16)
    base = float(ja.linear_cka(x, y, debiased=debiased))
    rotation = ortho_group.rvs(10, random_state=2)
    for transformed in (x @ rotation, 7.5 * x, x[:, rng.permutation(10)], x + 3.0):
        np.testing.assert_allclose(float(ja.linear_cka(transformed, y, debiased=debiased)), base, atol=2e-6)
    np.testing.assert_allclose(float(ja.linear_cka(y, x, debiased=debiased)), base, atol=1e-7)
    np.testing.assert_allclose(float(ja.linear_cka(x, x, debiased=debiased)), 1.0, atol=1e-6)


def test_debiased_is_near_zero_for_independent_data_where_biased_is_not():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(100, 500)), rng.normal(size=(100, 500))  # dims >> stimuli: biased CKA inflates
    biased, debiased = float(ja.linear_cka(x, y)), float(ja.linear_cka(x, y, debiased=True))
    assert biased > 0.7
    assert abs(debiased) < 0.05
    np.testing.assert_allclose(debiased, reference_cka(x, y, True), atol=1e-5)


@pytest.mark.parametrize("debiased", [False, True])
def test_matrix_matches_pairwise_reference_symmetric_unit_diagonal(debiased):
    rng = np.random.default_rng(4)
    features = rng.normal(size=(7, 50, 9))
    features[3:] = np.tanh(features[3:] @ rng.normal(size=(9, 9)))
    got = np.asarray(ja.cka_matrix(features, debiased=debiased))
    expected = np.array([[reference_cka(a, b, debiased) for b in features] for a in features])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(np.diag(got), 1.0)


# cka_matrix sets the diagonal to 1 and symmetrises, so those assertions hold by construction;
# these cases test the same properties where nothing forces them.

# Row blocks of a few stimuli (instead of 2**18 cells and at least 32 rows).
SMALL_BLOCKS = plan.GramBlocks(step_cells=1, min_rows=3)

PATHS = [  # (method, debiased, sharded over 4 devices)
    (method, debiased, sharded) for method in ("gram", "features") for debiased in (False, True) for sharded in (False, True)
]


def copies_of(x: np.ndarray, rng) -> dict[str, np.ndarray]:
    """Representations of x that linear CKA cannot tell from it: a duplicate, a rotation, an
    isotropic rescaling with an offset, and an isometric embedding in more dimensions."""
    d = x.shape[1]
    embedding = ortho_group.rvs(d + 3, random_state=rng)[:d]  # orthonormal rows: X E E^T X^T = X X^T
    return {"duplicate": x.copy(), "rotated": x @ ortho_group.rvs(d, random_state=rng),
            "rescaled": 1e3 * x - 7.0, "embedded": x @ embedding}


@pytest.mark.parametrize("method, debiased, sharded", PATHS)
def test_copies_of_a_model_give_off_diagonal_ones_and_its_row(devices, method, debiased, sharded):
    rng = np.random.default_rng(20)
    n = plan.FEATURE_DEBIASED_MIN_STIMULI + 16  # debiased feature path at full accuracy
    base = rng.normal(size=(n, 3))
    x = np.tanh(base @ rng.normal(size=(3, 5))) + 0.3 * rng.normal(size=(n, 5))
    others = [base @ rng.normal(size=(3, 4)) + rng.normal(size=(n, 4)), rng.normal(size=(n, 6))]
    copies = copies_of(x, rng)
    features = [x, others[0], *copies.values(), others[1]]
    mesh = ja.stimulus_mesh(devices) if sharded else None
    got = np.asarray(ja.cka_matrix(features, debiased=debiased, method=method, mesh=mesh))
    copy_index = range(2, 2 + len(copies))
    for c, name in zip(copy_index, copies):
        np.testing.assert_allclose(got[0, c], 1.0, atol=2e-6, err_msg=name)
        np.testing.assert_allclose(got[c], got[0], atol=2e-6, err_msg=name)  # the same row: same model
    expected = [reference_cka(x, other, debiased) for other in others]
    np.testing.assert_allclose(got[0, [1, len(features) - 1]], expected, atol=2e-6)
    assert (np.abs(got[0, [1, len(features) - 1]]) < 0.9).all()  # the ones are not everywhere


@settings(max_examples=max(5, settings.default.max_examples // 2))  # each example compiles
@given(
    path=st.sampled_from(PATHS), num_models=st.integers(2, 5), n=st.integers(8, 30), dim=st.integers(1, 6),
    small_blocks=st.booleans(), tiled=st.booleans(), seed=st.integers(0, 2**16),
)
def test_permuting_stimuli_changes_nothing_and_permuting_models_permutes(
    devices, path, num_models, n, dim, small_blocks, tiled, seed
):
    """Permuted stimuli (all models alike) move every Gram's entries across row blocks and
    change the first stimulus (the centring shift); permuted models change the tiles."""
    method, debiased, sharded = path
    rng = np.random.default_rng(seed)
    if debiased and method == "features":
        n += plan.FEATURE_DEBIASED_MIN_STIMULI
    base = rng.normal(size=(n, 3))
    features = np.stack([np.tanh(base @ rng.normal(size=(3, dim))) + rng.normal(size=(n, dim)) + 20
                         for _ in range(num_models)])
    mesh = ja.stimulus_mesh(devices) if sharded else None
    # Row blocks of a few stimuli (as in small_gram_blocks), so that small inputs have several.
    blocks = SMALL_BLOCKS if small_blocks else plan.GramBlocks()
    with plan.use_gram_blocks(blocks):
        max_bytes = None
        if tiled:  # tiles of one or two models
            max_bytes = (2 * plan.gram_model_bytes(n, dim, 4 if sharded else 1, blocks) if method == "gram"
                         else 4 * (2 * n * dim + 2 * dim * dim))

        def cka(f):
            return np.asarray(ja.cka_matrix(f, debiased=debiased, method=method, mesh=mesh, max_bytes=max_bytes))

        whole = cka(features)
        stimuli, models = rng.permutation(n), rng.permutation(num_models)
        np.testing.assert_allclose(cka(features[:, stimuli]), whole, atol=2e-6)
        np.testing.assert_allclose(cka(features[models]), whole[np.ix_(models, models)], atol=2e-6)


@pytest.mark.parametrize("method", ["gram", "features"])
def test_device_array_input_equals_numpy_input(method):
    """A [models, stimuli, dim] jax array is sliced per model lazily, never past its end."""
    features = np.random.default_rng(5).normal(size=(4, 30, 6)).astype(np.float32)
    expected = np.asarray(ja.cka_matrix(features, method=method))
    np.testing.assert_array_equal(np.asarray(ja.cka_matrix(jax.numpy.asarray(features), method=method)), expected)


def test_list_input_with_differing_dims():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(40, 6))
    features = [base @ rng.normal(size=(6, d)) + 0.3 * rng.normal(size=(40, d)) for d in (3, 6, 11, 11, 64)]
    for debiased in (False, True):
        got = np.asarray(ja.cka_matrix(features, debiased=debiased))
        expected = np.array([[reference_cka(a, b, debiased) for b in features] for a in features])
        np.testing.assert_allclose(got, expected, atol=2e-6)


@settings(max_examples=max(5, settings.default.max_examples // 2))  # each example compiles
@given(
    num_models=st.integers(2, 9),
    per_block=st.integers(1, 9),
    debiased=st.booleans(),
    same_dims=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_untiled(num_models, per_block, debiased, same_dims, seed):
    """max_bytes is a memory knob only: any block size gives the same matrix."""
    rng = np.random.default_rng(seed)
    n = 12
    dims = [5] * num_models if same_dims else [int(d) for d in rng.integers(1, 8, num_models)]
    features = [rng.normal(size=(n, d)) for d in dims]
    whole = np.asarray(ja.cka_matrix(features, debiased=debiased, method="gram"))
    max_bytes = 2 * per_block * plan.gram_model_bytes(n, max(dims))
    # One tile when all models fit; else row and column tiles of per_block models each.
    expected_block = num_models if num_models <= 2 * per_block else per_block
    assert plan.choose_path(dims, n, max_bytes, "gram").block == expected_block
    tiled = np.asarray(ja.cka_matrix(features, debiased=debiased, method="gram", max_bytes=max_bytes))
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


@pytest.fixture
def small_gram_blocks():
    """Row blocks of a few stimuli, so that small inputs exercise the block layout (odd and even
    block counts, padded stimuli) that real sizes get."""
    with plan.use_gram_blocks(SMALL_BLOCKS) as blocks:
        yield blocks


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n", [4, 5, 12, 37])
def test_gram_row_blocks_and_sharding_match_the_reference(small_gram_blocks, devices, debiased, n):
    rng = np.random.default_rng(n)
    dims = [3, 7, 1, 5, 2]
    base = rng.normal(size=(n, 4))
    features = [base @ rng.normal(size=(4, d)) + rng.normal(size=(n, d)) + 30 for d in dims]
    expected = np.array([[reference_cka(a, b, debiased) for b in features] for a in features])
    single = np.asarray(ja.cka_matrix(features, debiased=debiased, method="gram"))
    assert plan.gram_layout(n, blocks=small_gram_blocks).blocks > 1
    np.testing.assert_allclose(single, expected, atol=2e-6)
    mesh = ja.stimulus_mesh(devices)
    for method in ("gram", "features"):
        sharded = np.asarray(ja.cka_matrix(features, debiased=debiased, method=method, mesh=mesh))
        np.testing.assert_allclose(sharded, single, atol=2e-6)
    # Model tiles and device shards together.
    tiled = ja.cka_matrix(features, debiased=debiased, method="gram", mesh=mesh,
                          max_bytes=2 * 2 * plan.gram_model_bytes(n, max(dims), shards=4, blocks=small_gram_blocks))
    np.testing.assert_allclose(np.asarray(tiled), single, atol=2e-6)


def test_layout_covers_each_pair_of_stimuli_once():
    """Summing the column weights of every (row, column) cell the row blocks visit gives each
    unordered pair of stimuli weight 2 and each stimulus with itself weight 1."""
    # The last case is the regime of 5,000 stimuli over 3 shards (rows set by the step's cells,
    # ~50 blocks padded to a multiple of 3) at a tenth of the size: a 500 x 500 coverage table.
    small_steps = plan.GramBlocks(step_cells=plan.GramBlocks().step_cells // 100, min_rows=3)
    cases = [(37, 1, None), (37, 4, None), (12, 4, None), (1000, 1, None), (1000, 2, None), (500, 3, small_steps)]
    for n, shards, blocks in cases:
        layout = plan.gram_layout(n, shards, blocks or plan.GramBlocks())
        if blocks is not None:
            assert layout.blocks >= 45 and layout.rows == -(-n // layout.blocks) > blocks.min_rows
        assert layout.blocks % shards == 0 and layout.rows * layout.blocks >= n
        padded = layout.rows * layout.blocks
        covered = np.zeros((padded, padded))
        weights = plan.column_weights(layout) ** 2
        for block in range(layout.blocks):
            rows = block * layout.rows + np.arange(layout.rows)
            cols = (block * layout.rows + np.arange(layout.span)) % padded
            np.add.at(covered, (rows[:, None], cols[None, :]), weights[None, :])
        symmetric = covered + covered.T
        np.testing.assert_allclose(symmetric, 2.0, atol=1e-5)
        assert layout.cells <= 0.75 * padded**2 or layout.blocks <= 4


@pytest.mark.parametrize("precision, atol", [("tensorfloat32", 2e-3), ("bfloat16", 2e-2)])
@pytest.mark.parametrize("method", ["gram", "features"])
def test_reduced_matmul_precision_stays_close(precision, atol, method):
    rng = np.random.default_rng(12)
    base = rng.normal(size=(200, 8))
    features = np.stack([np.tanh(base @ rng.normal(size=(8, 32))) + 0.3 * rng.normal(size=(200, 32)) + 4
                         for _ in range(5)])
    exact = np.asarray(ja.cka_matrix(features, method=method))
    fast = np.asarray(ja.cka_matrix(features, method=method, matmul_precision=precision))
    np.testing.assert_allclose(fast, exact, atol=atol)
    np.testing.assert_array_equal(np.diag(fast), 1.0)
    if precision == "bfloat16":
        assert np.abs(fast - exact).max() > 0  # bfloat16 operands really are used


@given(hnp.arrays(np.float32, st.tuples(st.integers(2, 5), st.integers(4, 10), st.integers(1, 4)),
                  elements=st.floats(-100, 100, width=32, allow_subnormal=False)))
def test_matrix_properties_on_arbitrary_values(features):
    # Subnormal floats are excluded: XLA flushes them to zero, so they would read as constant.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant models are allowed here
        got = np.asarray(ja.cka_matrix(features))
    constant = np.array([np.ptp(f, axis=0).max() == 0 for f in features])
    assert np.array_equal(np.isnan(np.diag(got)), constant)
    defined = got[~constant][:, ~constant]
    np.testing.assert_array_equal(defined, defined.T)
    assert ((defined >= -1e-6) & (defined <= 1 + 1e-6)).all()


def test_constant_model_gets_nan_row_and_column_and_a_warning_naming_it():
    rng = np.random.default_rng(6)
    features = [rng.normal(size=(20, 4)), np.full((20, 3), 2.5), rng.normal(size=(20, 4))]
    with pytest.warns(RuntimeWarning, match=r"model 1: features constant"):
        got = np.asarray(ja.cka_matrix(features))
    assert np.isnan(got[1]).all() and np.isnan(got[:, 1]).all()
    assert not np.isnan(got[[0, 2]][:, [0, 2]]).any()
    with pytest.warns(RuntimeWarning, match="constant"):
        assert np.isnan(float(ja.linear_cka(features[0], features[1])))


def test_cka_inside_jit():
    rng = np.random.default_rng(7)
    x, y = related(rng, n=30)
    fn = jax.jit(lambda a, b: ja.linear_cka(a, b, debiased=True))
    np.testing.assert_allclose(float(fn(x, y)), reference_cka(x, y, True), atol=2e-5)


@pytest.mark.parametrize(
    "features, kwargs, match",
    [
        ([np.zeros((10, 3))], {}, "1 model"),
        ([np.ones((10, 3)), np.ones((9, 3))], {}, "model 1 has 9 stimuli but model 0 has 10"),
        ([np.ones((3, 3)), np.ones((3, 3))], {"debiased": True}, "model 0 has 3 stimuli; debiased CKA needs at least 4"),
        ([np.ones((1, 3)), np.ones((1, 3))], {}, "needs at least 2"),
        ([np.ones((10, 3)), np.array([[1.0, np.nan]] * 10)], {}, "model 1 features contain nan at stimulus 0, dimension 1"),
        ([np.ones((10, 3)), np.array([[np.inf, 1.0]] * 10)], {}, "model 1 features contain inf"),
        ([np.ones((10, 3)), np.full((10, 2), 1e300)], {}, "finite float32"),
        ([np.ones((10, 3)), np.ones(10)], {}, r"model 1 features must have shape \[stimuli, dim\]"),
        ({"alexnet": np.ones((10, 3)), "vit": np.ones((8, 3))}, {}, "model 'vit' has 8 stimuli but model 'alexnet' has 10"),
        ({"alexnet": np.ones((10, 3)), "vit": np.full((10, 2), np.nan)}, {}, "model 'vit' features contain nan"),
        (np.ones((10, 3)), {}, r"\[models, stimuli, dim\]"),
        ([np.ones((10, 3)), np.ones((10, 0))], {}, "no dimensions"),
        ([np.ones((10, 3)), np.ones((10, 3))], {"max_bytes": 100}, "cannot hold the features and Gram row blocks of one model"),
        ([np.ones((10, 3)), np.ones((10, 3))], {"matmul_precision": "fp8"}, "matmul_precision must be one of"),
        ([np.ones((10, 3)), np.ones((10, 3))], {"mesh": "gpu"}, "mesh must be a jax.sharding.Mesh"),
    ],
)
def test_bad_input_names_the_culprit(features, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ja.cka_matrix(features, **kwargs)


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e12, 1e30])
def test_extreme_feature_scales_neither_underflow_nor_overflow(scale):
    x, y = related(np.random.default_rng(8), n=30)
    got = float(ja.linear_cka((x * scale).astype(np.float32), y.astype(np.float32)))
    np.testing.assert_allclose(got, reference_cka(x, y), atol=2e-5)


@pytest.mark.parametrize("debiased", [False, True])
@settings(max_examples=max(5, settings.default.max_examples // 3))  # each example compiles
@given(
    dims=st.lists(st.integers(1, 9), min_size=2, max_size=6),
    n=st.integers(4, 30),
    budget=st.sampled_from([None, 0]),
    seed=st.integers(0, 2**16),
)
def test_feature_path_equals_gram_path_and_reference(debiased, dims, n, budget, seed):
    if debiased:
        n += plan.FEATURE_DEBIASED_MIN_STIMULI  # below it, auto keeps debiased CKA on the Gram path
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 4))
    features = [base @ rng.normal(size=(4, d)) + rng.normal(size=(n, d)) + 50 for d in dims]
    # budget 0: the smallest feature blocks that hold the widest model (many tiles).
    max_bytes = None if budget is None else 4 * (2 * n * max(dims) + 2 * max(dims) ** 2)
    by_features = np.asarray(ja.cka_matrix(features, debiased=debiased, method="features", max_bytes=max_bytes))
    by_grams = np.asarray(ja.cka_matrix(features, debiased=debiased, method="gram"))
    expected = np.array([[reference_cka(a, b, debiased) for b in features] for a in features])
    np.testing.assert_allclose(by_features, expected, atol=5e-5)
    np.testing.assert_allclose(by_grams, expected, atol=5e-5)
    np.testing.assert_array_equal(by_features, by_features.T)


def test_path_choice_follows_flops_and_memory():
    choose = plan.choose_path
    # Few dims against many stimuli: features; many dims against few stimuli: Grams.
    assert choose([16] * 10, 5000, 10**10, "auto").name == "features"
    assert choose([2048] * 10, 500, 10**10, "auto").name == "gram"
    # The memory case: Grams are streamed, so they fit in tiles of models.
    path = choose([256] * 200, 4000, 10**9, "auto")
    assert path.name == "gram" and 1 < path.block < 200
    assert choose([256] * 200, 4000, 10**10, "auto").block == 200
    with pytest.raises(ValueError, match="cannot hold the features and Gram row blocks of one model"):
        choose([256] * 200, 4000, 10**6, "gram")
    # Debiased CKA on few stimuli stays on the (tiny, exact) Gram path.
    assert choose([16] * 10, 5000, 10**10, "auto", debiased=True).name == "features"
    assert choose([16] * 10, 40, 10**10, "auto", debiased=True).name == "gram"
    with pytest.raises(ValueError, match="method must be"):
        ja.cka_matrix([np.ones((5, 2)), np.ones((5, 2))], method="fast")


# --- streaming over stimuli -------------------------------------------------------------------


def _batches(features, size):
    return [[f[start : start + size] for f in features] for start in range(0, features[0].shape[0], size)]


@pytest.mark.parametrize("debiased", [False, True])
@settings(max_examples=max(5, settings.default.max_examples // 3))  # each example compiles
@given(
    dims=st.lists(st.integers(1, 7), min_size=2, max_size=5),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    offset=st.sampled_from([0.0, 3.0, 1e3]),
    split=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_exact_accumulators_equal_cka_of_all_stimuli(debiased, dims, sizes, offset, split, seed):
    """Any batch sizes (1 stimulus too), large means, and merging at any point give the CKA of
    all stimuli at once."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    if n < plan.FEATURE_DEBIASED_MIN_STIMULI:
        sizes = sizes + [plan.FEATURE_DEBIASED_MIN_STIMULI - n]
        n = sum(sizes)
    base = rng.normal(size=(n, 3))
    features = [(base @ rng.normal(size=(3, d)) + rng.normal(size=(n, d)) + offset).astype(np.float32) for d in dims]
    estimator = "exact-debiased" if debiased else "exact"
    parts = [ja.CKAAccumulator(len(dims), estimator=estimator) for _ in range(2)]
    start = 0
    for b, size in enumerate(sizes):
        parts[b >= split].update([f[start : start + size] for f in features])
        start += size
    merged = parts[0].merge(parts[1])
    assert merged.num_stimuli == n and merged.num_batches == len(sizes)
    expected = np.array([[reference_cka(a, b, debiased) for b in features] for a in features])
    np.testing.assert_allclose(np.asarray(merged.compute()), expected, atol=5e-5)


def _minibatch_reference(features, size):
    """Nguyen et al. (2021): mean over batches of the unbiased HSIC, then normalised (float64)."""
    hsic = np.zeros((len(features), len(features)))
    batches = _batches(features, size)
    for batch in batches:
        grams = [_centre_gram(x @ x.T, True) for x in (np.asarray(b, np.float64) for b in batch)]
        n = batch[0].shape[0]
        hsic += np.array([[(a * b).sum() / (n * (n - 3)) for b in grams] for a in grams])
    hsic /= len(batches)
    return hsic / np.sqrt(np.outer(np.diag(hsic), np.diag(hsic)))


def test_minibatch_accumulator_matches_its_reference_and_merges():
    rng = np.random.default_rng(10)
    base = rng.normal(size=(120, 6))
    features = np.stack([np.tanh(base @ rng.normal(size=(6, 8))) + 0.5 * rng.normal(size=(120, 8)) for _ in range(5)])
    batches = _batches(list(features), 20)
    whole = ja.CKAAccumulator(5)
    for batch in batches:
        whole.update(np.stack(batch))
    expected = _minibatch_reference(list(features), 20)
    np.testing.assert_allclose(np.asarray(whole.compute()), expected, atol=2e-5)
    # Two accumulators (e.g. two devices) merged give the same answer.
    first, second = ja.CKAAccumulator(5), ja.CKAAccumulator(5)
    for batch in batches[:2]:
        first.update(batch)
    for batch in batches[2:]:
        second.update(batch)
    np.testing.assert_allclose(np.asarray(first.merge(second).compute()), np.asarray(whole.compute()), atol=1e-6)


def test_minibatch_estimate_approaches_debiased_cka_with_large_batches():
    rng = np.random.default_rng(11)
    base = rng.normal(size=(2000, 8))
    features = [np.tanh(base @ rng.normal(size=(8, 16))) + 0.3 * rng.normal(size=(2000, 16)) for _ in range(3)]
    accumulator = ja.CKAAccumulator(3)
    for batch in _batches(features, 500):
        accumulator.update(batch)
    full = np.asarray(ja.cka_matrix(features, debiased=True))
    np.testing.assert_allclose(np.asarray(accumulator.compute()), full, atol=0.02)


def test_accumulator_bad_input():
    with pytest.raises(ValueError, match="estimator must be one of"):
        ja.CKAAccumulator(3, estimator="fast")
    exact = ja.CKAAccumulator(2, estimator="exact-debiased").update([np.ones((3, 2)), np.eye(3, 2)])
    with pytest.raises(ValueError, match="3 stimuli; exact-debiased CKA needs at least 4"):
        exact.compute()
    with pytest.raises(ValueError, match="same number of models and estimator"):
        exact.merge(ja.CKAAccumulator(2, estimator="exact"))
    with pytest.raises(ValueError, match="at least 2"):
        ja.CKAAccumulator(1)
    accumulator = ja.CKAAccumulator(2)
    with pytest.raises(ValueError, match="no batches"):
        accumulator.compute()
    with pytest.raises(ValueError, match="batch has 3 models but the accumulator was made for 2"):
        accumulator.update([np.ones((5, 2))] * 3)
    with pytest.raises(ValueError, match="debiased CKA needs at least 4"):
        accumulator.update([np.ones((3, 2))] * 2)
    accumulator.update([np.random.default_rng(0).normal(size=(6, 2))] * 2)
    with pytest.raises(ValueError, match=r"batch dims \[3, 2\] differ"):
        accumulator.update([np.ones((6, 3)), np.ones((6, 2))])
    with pytest.raises(ValueError, match="model 1 features contain nan"):
        accumulator.update([np.ones((6, 2)), np.full((6, 2), np.nan)])


def test_default_memory_budget_is_this_processs_device(monkeypatch):
    """Under jax.distributed the global first device is process 0's: its memory is not this
    process's to plan with (and on another host cannot be asked)."""
    class Device:
        def __init__(self, limit):
            self.limit = limit

        def memory_stats(self):
            return {"bytes_limit": self.limit}

    monkeypatch.setattr(jax, "devices", lambda *args: [Device(4_000)])
    monkeypatch.setattr(jax, "local_devices", lambda *args: [Device(400)])
    assert plan.default_max_bytes() == 100
