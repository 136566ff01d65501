"""Per-model accuracy and accuracy bins."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxagree as ja


def test_accuracy_skips_unlabelled_and_counts_no_response_as_wrong():
    preds = np.array([[0, 1, 2, -1], [0, 0, 0, 0], [1, 1, 2, 3]])
    labels = np.array([0, 1, -1, 3])  # stimulus 2 unlabelled
    np.testing.assert_allclose(ja.model_accuracy(preds, labels, num_categories=4), [2 / 3, 1 / 3, 2 / 3], rtol=1e-6)


@given(hnp.arrays(np.int32, st.tuples(st.integers(1, 6), st.integers(1, 20)), elements=st.integers(-1, 3)), st.data())
def test_accuracy_matches_numpy(preds, data):
    labels = data.draw(hnp.arrays(np.int32, preds.shape[1], elements=st.integers(-1, 3)))
    if not (labels >= 0).any():
        with pytest.raises(ValueError, match="no labelled stimulus"):
            ja.model_accuracy(preds, labels, num_categories=4)
        return
    labelled = labels >= 0
    expected = (preds[:, labelled] == labels[labelled]).mean(1)
    np.testing.assert_allclose(ja.model_accuracy(preds, labels, num_categories=4), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([0, 4]), r"labels\[stimulus 1\] = 4 is outside"),
        (np.array([0, -2]), r"labels\[stimulus 1\] = -2"),
        (np.array([0, 1, 2]), "labels has 3 stimuli but predictions has 2"),
        (np.array([0.0, 1.0]), "integers"),
    ],
)
def test_accuracy_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        ja.model_accuracy(np.zeros((2, 2), int), labels, num_categories=4)


@given(hnp.arrays(np.float64, st.integers(2, 40), elements=st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.71, 0.9])), st.integers(1, 20))
def test_equal_count_bins(accuracy, num_bins):
    if 2 * num_bins > accuracy.shape[0]:
        with pytest.raises(ValueError, match="needs at least"):
            ja.accuracy_bins(accuracy, num_bins=num_bins)
        return
    bins = ja.accuracy_bins(accuracy, num_bins=num_bins)
    sizes = bins.model_mask.sum(1)
    assert bins.model_mask.shape == (num_bins, accuracy.shape[0])
    assert sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(bins.model_mask.sum(0), 1)  # every model in exactly one bin
    for b in range(num_bins - 1):  # bins are ordered by accuracy
        assert accuracy[bins.model_mask[b]].max() <= accuracy[bins.model_mask[b + 1]].min()
    np.testing.assert_array_equal(bins.lower, [accuracy[m].min() for m in bins.model_mask])


def test_edge_bins_include_last_edge_and_leave_out_models_outside():
    accuracy = np.array([0.1, 0.5, 0.55, 0.6, 0.7, 0.8, 0.8, 0.95])
    bins = ja.accuracy_bins(accuracy, edges=[0.5, 0.7, 0.8])
    np.testing.assert_array_equal(bins.model_mask[0], [0, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(bins.model_mask[1], [0, 0, 0, 0, 1, 1, 1, 0])
    assert bins.names() == ["0.500-0.700", "0.700-0.800"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one"),
        ({"num_bins": 2, "edges": [0, 1]}, "exactly one"),
        ({"edges": [0.0, 0.2, 1.0]}, r"accuracy bin 0 \[0, 0.2\] holds 1 model"),
        ({"edges": [0.5, 0.5, 1.0]}, "strictly increasing"),
        ({"num_bins": 0}, "positive integer"),
    ],
)
def test_bins_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ja.accuracy_bins(np.array([0.1, 0.4, 0.5, 0.6]), **kwargs)


def test_bins_reject_nan_accuracy():
    with pytest.raises(ValueError, match="accuracy of model 1 is nan"):
        ja.accuracy_bins(np.array([0.1, np.nan, 0.5, 0.6]), num_bins=2)
