"""Streaming CKA as a pure, mergeable state (cka_stream / CKAState): float64 references at 10**6
stimuli, one jitted step sharded over 4 devices, merge properties, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec as P

import jaxagree as ja
from jaxagree.cka import plan
from tests.test_cka import _minibatch_reference, reference_cka

ESTIMATORS = ("exact", "exact-debiased", "minibatch")


def features_of(rng, n, dims, offset=0.0, dtype=np.float32):
    """Related models (a shared 3-d latent, each its own nonlinearity and noise) with means
    ``offset`` (per dimension, around it) against a spread of about 1."""
    base = rng.normal(size=(n, 3))
    return [(np.tanh(base @ rng.normal(size=(3, d))) + 0.5 * rng.normal(size=(n, d))
             + offset * rng.uniform(0.5, 1.5, d)).astype(dtype) for d in dims]


def reference(features, estimator, batch=None):
    """float64 NumPy: CKA of all stimuli from centred cross-products (debiased from U-centred
    HSIC in closed form), or Nguyen et al.'s mean of per-batch unbiased HSIC."""
    dims = [f.shape[1] for f in features]
    member = np.repeat(np.eye(len(dims)), dims, axis=0)

    def inner(parts, debiased):
        x = np.concatenate([np.asarray(p, np.float64) for p in parts], axis=1)
        x -= x.mean(axis=0)
        n, cross = x.shape[0], x.T @ x
        products = member.T @ (cross * cross) @ member
        if debiased:
            norms = (x * x) @ member
            sums = norms.sum(axis=0)
            products += np.outer(sums, sums) / ((n - 1) * (n - 2)) - n / (n - 2) * (norms.T @ norms)
        return products

    if estimator == "minibatch":
        n = features[0].shape[0]
        hsic = sum(inner([f[s : s + batch] for f in features], True) / (batch * (batch - 3)) for s in range(0, n, batch))
    else:
        hsic = inner(features, estimator == "exact-debiased")
    scale = np.sqrt(np.diag(hsic))
    return hsic / np.outer(scale, scale)


def stream_all(features, estimator, batch, update=None):
    stream = ja.cka_stream([f[:batch] for f in features], estimator=estimator)
    update = update or stream.update
    state = stream.init()
    for start in range(0, features[0].shape[0], batch):
        state = update(state, [f[start : start + batch] for f in features])
    return stream, state


def test_the_float64_reference_is_the_gram_reference():
    features = features_of(np.random.default_rng(0), 40, (3, 5, 2), offset=10.0)
    for estimator, debiased in (("exact", False), ("exact-debiased", True)):
        expected = np.array([[reference_cka(a, b, debiased) for b in features] for a in features])
        np.testing.assert_allclose(reference(features, estimator), expected, atol=1e-12)
    np.testing.assert_allclose(reference(features, "minibatch", 10), _minibatch_reference(features, 10), atol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_million_stimuli_with_large_means_match_float64(estimator):
    """The precision plan (jaxagree.cka._moments): float32 sums about a reference stimulus, each
    batch centred on its own mean, 100 batches of 10**4 stimuli with means of about 1e3."""
    features = features_of(np.random.default_rng(1), 10**6, (3, 5, 8), offset=1e3)
    stream, state = stream_all(features, estimator, 10**4)
    assert int(state.count) == 10**6 and int(state.batches) == 100
    assert all(leaf.dtype in (jnp.float32, jnp.int32) for leaf in jax.tree.leaves(state))
    got = np.asarray(stream.compute(state))
    np.testing.assert_allclose(got, reference(features, estimator, 10**4), atol=1e-4)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_float64_state_with_x64(estimator):
    with jax.enable_x64(True):
        features = features_of(np.random.default_rng(2), 3000, (2, 4, 3), offset=1e3, dtype=np.float64)
        stream, state = stream_all(features, estimator, 500)
        assert state.cross.dtype == state.hsic.dtype == jnp.float64
        got = np.asarray(stream.compute(state))
    np.testing.assert_allclose(got, reference(features, estimator, 500), atol=1e-9)


@pytest.mark.parametrize("batch", [20, 100])  # minibatch: U-centred Grams of 20, cross-products of 100
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_stream_equals_cka_matrix_and_the_minibatch_reference(estimator, batch):
    features = features_of(np.random.default_rng(3), 400, (4, 6, 3, 5), offset=50.0)
    stream, state = stream_all(features, estimator, batch)
    got = np.asarray(stream.compute(state))
    if estimator == "minibatch":
        assert plan.minibatch_route(batch, stream.dims) == ("gram" if batch == 20 else "features")
        np.testing.assert_allclose(got, _minibatch_reference(features, batch), atol=2e-5)
    else:
        expected = np.asarray(ja.cka_matrix(features, debiased=estimator == "exact-debiased"))
        np.testing.assert_allclose(got, expected, atol=2e-5)
    # Under jit, with a mapping of named models: the same.
    named = {f"m{i}": f for i, f in enumerate(features)}
    _, jitted = stream_all(list(named.values()), estimator, batch, update=jax.jit(
        lambda s, b: stream.update(s, dict(zip(named, b)))))
    np.testing.assert_allclose(np.asarray(stream.compute(jitted)), got, atol=1e-6)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))  # a pytree of arrays only


def sharded_step(stream, mesh):
    """One jitted step: the batch's stimuli split over the mesh's devices, each device updates
    an empty state with its shard, one psum of the states, merged into the running state."""
    axes = mesh.axis_names

    @jax.jit
    def step(state, batch):
        def local(shard):
            return jax.lax.psum(stream.update(stream.init(), shard), axes)

        part = jax.shard_map(local, mesh=mesh, in_specs=(P(axes),), out_specs=P())(batch)
        return stream.merge(state, part)

    return step


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_sharded_step_equals_one_device(devices, estimator):
    """Exact estimators: any split of the stimuli over devices gives the CKA of all of them.
    Minibatch: a device's shard is one whole batch, so a step of 4 x 40 stimuli is 4 batches of
    40, as a one-device stream of those batches in order."""
    features = features_of(np.random.default_rng(4), 480, (3, 5, 2), offset=100.0)
    stream = ja.cka_stream([f[:1] for f in features], estimator=estimator)
    step = sharded_step(stream, ja.stimulus_mesh(devices))
    state = stream.init()
    for start in range(0, 480, 160):
        state = step(state, [jnp.asarray(f[start : start + 160]) for f in features])
    assert int(state.count) == 480 and int(state.batches) == 12  # every device's update is a batch
    got = np.asarray(stream.compute(state))
    if estimator == "minibatch":
        _, one = stream_all(features, estimator, 40)
        np.testing.assert_allclose(got, np.asarray(stream.compute(one)), atol=1e-6)
    else:
        expected = np.asarray(ja.cka_matrix(features, debiased=estimator == "exact-debiased"))
        np.testing.assert_allclose(got, expected, atol=2e-5)


def assert_states_close(a, b, rtol=1e-5):
    for name, x, y in zip(ja.CKAState._fields, a, b):
        scale = max(float(np.abs(np.asarray(x)).max(initial=0.0)), 1.0)
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=rtol * scale, err_msg=name)


@settings(max_examples=max(5, settings.default.max_examples // 3))  # each example compiles
@given(
    estimator=st.sampled_from(ESTIMATORS),
    dims=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    sizes=st.lists(st.integers(4, 30), min_size=3, max_size=6),
    offset=st.sampled_from([0.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_merge_is_associative_and_commutative_and_chunks_change_nothing(estimator, dims, sizes, offset, seed):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    features = features_of(rng, n, dims, offset)
    stream = ja.cka_stream([f[:1] for f in features], estimator=estimator)
    starts = np.cumsum([0, *sizes])
    parts = [stream.update(stream.init(), [f[a:b] for f in features]) for a, b in zip(starts, starts[1:])]
    a, b, c = parts[0], parts[1], parts[2]
    for x, y in zip(stream.merge(a, b), stream.merge(b, a)):  # IEEE addition commutes exactly
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert_states_close(stream.merge(a, stream.merge(b, c)), stream.merge(stream.merge(a, b), c))
    # Chunked: the batches split over states (devices, processes) and merged in any grouping.
    sequential = stream.init()
    for part in parts:
        sequential = stream.merge(sequential, part)
    halves = stream.merge(parts[0], stream.init())
    other = stream.init()
    for part in parts[1:]:
        other = stream.merge(part, other)
    grouped = stream.merge(other, halves)
    np.testing.assert_allclose(np.asarray(stream.compute(grouped)), np.asarray(stream.compute(sequential)), atol=1e-5)
    if estimator != "minibatch":  # unchunked: all stimuli in one batch
        whole = stream.update(stream.init(), features)
        np.testing.assert_allclose(np.asarray(stream.compute(sequential)), np.asarray(stream.compute(whole)),
                                   atol=5e-5)
        expected = reference(features, estimator)
        np.testing.assert_allclose(np.asarray(stream.compute(sequential)), expected, atol=5e-5)


def test_stream_bad_input():
    good = [np.random.default_rng(0).normal(size=(6, 2)) for _ in range(2)]
    with pytest.raises(ValueError, match="estimator must be one of"):
        ja.cka_stream(good, estimator="fast")
    with pytest.raises(ValueError, match=r"1 model\(s\); CKA needs at least 2"):
        ja.cka_stream(good[:1])
    with pytest.raises(ValueError, match="model 1 features contain nan at stimulus 0"):
        ja.cka_stream([good[0], np.full((6, 2), np.nan)])
    stream = ja.cka_stream(good)
    state = stream.init()
    with pytest.raises(ValueError, match="no batches were added"):
        stream.compute(state)
    with pytest.raises(ValueError, match="batch has 3 models but the stream was made for 2"):
        stream.update(state, [good[0]] * 3)
    with pytest.raises(ValueError, match=r"batch dims \[3, 2\] differ from the stream's \[2, 2\]"):
        stream.update(state, [np.ones((6, 3)), good[1]])
    with pytest.raises(ValueError, match="model 0 has 3 stimuli; debiased CKA needs at least 4"):
        stream.update(state, [g[:3] for g in good])
    with pytest.raises(ValueError, match="model 'vit' features contain inf at stimulus 2, dimension 1"):
        bad = good[1].copy()
        bad[2, 1] = np.inf
        stream.update(state, {"alexnet": good[0], "vit": bad})
    exact = ja.cka_stream(good, estimator="exact-debiased")
    short = exact.update(exact.init(), [g[:3] for g in good])
    with pytest.raises(ValueError, match="3 stimuli; exact-debiased CKA needs at least 4"):
        exact.compute(short)
    with pytest.raises(ValueError, match=r"state.total has shape \(0,\); this stream's \(exact-debiased"):
        exact.merge(short, state)  # a minibatch state
    with pytest.raises(ValueError, match="expected a CKAState"):
        exact.update(tuple(short), good)
    wider = ja.cka_stream([good[0], np.ones((6, 3))], estimator="exact-debiased")
    with pytest.raises(ValueError, match="a state of another stream"):
        wider.compute(short)
