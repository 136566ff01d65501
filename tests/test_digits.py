"""The cluttered-digits source (jaxagree.data.digits, ``synthetic:digits?...``): shapes, labels,
train and pool drawn from disjoint source digits, determinism, and parameter errors."""

import jax
import numpy as np
import pytest

from jaxagree.data import open_stimuli
from jaxagree.data.digits import CATEGORIES, compose_digits, digit_canvases, digit_split, source_digits


def test_source_digits_split_into_disjoint_train_and_pool():
    images, labels = source_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    train, pool = digit_split("train"), digit_split("pool")
    assert not set(train) & set(pool)
    assert sorted(set(train) | set(pool)) == list(range(1797))
    assert len(pool) == round(1797 * 0.25)
    assert np.array_equal(train, digit_split("train"))  # a fixed seed: the same split every run
    assert set(labels[pool]) == set(range(10))
    with pytest.raises(ValueError, match="split must be one of train, pool"):
        digit_split("test")


def test_canvases_draw_digits_and_fragments_from_their_split_only():
    train = digit_canvases(jax.random.key(0), 300, split="train", clutter=2)
    pool = digit_canvases(jax.random.key(0), 300, split="pool", clutter=2)
    for canvases, split in ((train, "train"), (pool, "pool")):
        members = set(digit_split(split))
        assert set(canvases.digits) <= members and set(canvases.fragments.ravel()) <= members
        assert canvases.fragments.shape == (300, 2)
    assert not (set(train.digits) | set(train.fragments.ravel())) & (set(pool.digits) | set(pool.fragments.ravel()))
    assert np.array_equal(train.labels, source_digits()[1][train.digits])


def test_source_gives_labelled_canvases_with_ids_and_categories():
    stimuli = open_stimuli("synthetic:digits?split=pool&n=40&size=24&seed=3&clutter=1&noise=0.05")
    assert stimuli.images.shape == (40, 24, 24, 3) and stimuli.images.dtype == np.uint8
    assert stimuli.labels.dtype == np.int32 and 0 <= stimuli.labels.min() and stimuli.labels.max() <= 9
    assert stimuli.categories == list(CATEGORIES) == [str(d) for d in range(10)]
    assert len(set(stimuli.ids)) == 40 and stimuli.ids[1].startswith("digits-pool-3-000001-d")
    pool = set(digit_split("pool"))
    assert all(int(i.rpartition("-d")[2]) in pool for i in stimuli.ids)  # ids name the source digit


def test_same_seed_same_canvases_other_seed_others():
    a = open_stimuli("synthetic:digits?split=train&n=20&seed=1")
    b = open_stimuli("synthetic:digits?split=train&n=20&seed=1")
    c = open_stimuli("synthetic:digits?split=train&n=20&seed=2")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert np.array_equal(a.labels, b.labels)
    # The first canvases do not depend on how many are asked for (one key per canvas).
    longer = open_stimuli("synthetic:digits?split=train&n=30&seed=1")
    assert np.array_equal(longer.images[:20], a.images)


def test_composing_is_a_pure_function_of_keys_and_digits():
    digits = source_digits()[0][:5]
    keys = jax.random.split(jax.random.key(4), 3)
    one = compose_digits(keys, digits, image_size=16, min_scale=0.5, max_scale=1.0, clutter=0, noise=0.0)
    two = compose_digits(keys, digits, image_size=16, min_scale=0.5, max_scale=1.0, clutter=0, noise=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(one, two))
    assert one[0].shape == (3, 16, 16, 3) and one[1].shape == (3,) and one[2].shape == (3, 0)


@pytest.mark.parametrize("query, named", [
    ("split=test", "parameter 'split'"),
    ("n=many", "parameter 'n'"),
    ("noise=loud", "parameter 'noise'"),
    ("clutter=9", "clutter"),
    ("size=8", "image_size"),
    ("min_scale=0.9&max_scale=0.5", "min_scale"),
    ("n=0", "num_stimuli"),
    ("colour=red", "unknown parameter(s) ['colour']"),
])
def test_bad_parameters_raise_errors_naming_them(query, named):
    with pytest.raises(ValueError) as error:
        open_stimuli(f"synthetic:digits?{query}")
    assert named in str(error.value) and f"synthetic:digits?{query}" in str(error.value)
