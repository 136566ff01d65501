"""The paper's agreement analysis (Fig. 3): overall and per accuracy bin, against float64."""

import numpy as np
import pytest

from jaxagree.analysis import analyse_agreement

from . import reference

NUM_CATEGORIES, K = 5, 6


def three_accuracy_levels(seed: int = 0):
    """15 models at about 35%, 60% and 85% accuracy (5 each) on 60 stimuli, with missing
    responses, an unlabelled stimulus and one with a single rater: each accuracy bin errs, and
    so disagrees, on stimuli of its own."""
    rng = np.random.default_rng(seed)
    num_models, num_stimuli = 15, 60
    labels = rng.choice(NUM_CATEGORIES, num_stimuli, p=[0.45, 0.25, 0.1, 0.1, 0.1])  # Fleiss != Randolph
    labels[7] = -1
    target = np.repeat([0.35, 0.6, 0.85], 5) + rng.uniform(-0.05, 0.05, num_models)
    right = (rng.random((num_models, num_stimuli)) < target[:, None]) & (labels >= 0)
    preds = np.where(right, labels, rng.integers(0, NUM_CATEGORIES, (num_models, num_stimuli)))
    preds[rng.random(preds.shape) < 0.08] = -1
    preds[1:, 11] = -1
    return preds.astype(np.int32), labels


def expected_bins(preds, labels, bins_mask):
    """Per bin, from float64: agreement, kappa over all stimuli, the bin's own k lowest-agreement
    stimuli and kappa over them."""
    agreement, kappa_all, contrastive, kappa_contrastive = [], [], [], []
    for members in bins_mask:
        table = reference.counts(preds[members], NUM_CATEGORIES)
        agreement.append(reference.agreement(table))
        kappa_all.append(reference.kappa(table))
        contrastive.append(reference.contrastive(agreement[-1], K))
        kappa_contrastive.append(reference.kappa(table[contrastive[-1]]))
    return np.array(agreement), np.array(kappa_all), np.array(contrastive), np.array(kappa_contrastive)


@pytest.mark.parametrize("binning", [{"num_bins": 3}, {"bin_edges": [0.0, 0.5, 0.75, 1.0]}])
def test_each_bin_uses_its_own_contrastive_stimuli(binning):
    preds, labels = three_accuracy_levels()
    analysis = analyse_agreement(preds, num_categories=NUM_CATEGORIES, labels=labels, k=K, **binning)

    accuracy = reference.accuracy(preds, labels)
    np.testing.assert_allclose(analysis.accuracy, accuracy, rtol=0, atol=1e-7)
    if "num_bins" in binning:
        mask = reference.equal_count_bins(accuracy, 3)
    else:
        edges = np.array(binning["bin_edges"])
        mask = (accuracy >= edges[:-1, None]) & (accuracy < edges[1:, None])
        mask[-1] |= accuracy == edges[-1]  # the last bin holds its upper edge
    np.testing.assert_array_equal(analysis.per_bin.bins.model_mask, mask)
    assert (mask.sum(1) >= 4).all()  # every bin a real group

    agreement, kappa_all, contrastive, kappa_contrastive = expected_bins(preds, labels, mask)
    overall = reference.contrastive(reference.agreement(reference.counts(preds, NUM_CATEGORIES)), K)
    # The data must tell the sets apart, or a wrong subset would pass unseen.
    for b in range(3):
        assert set(contrastive[b]) != set(overall)
        for other in range(b):
            assert set(contrastive[b]) != set(contrastive[other])

    per_bin = analysis.per_bin
    np.testing.assert_allclose(per_bin.agreement, agreement, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(per_bin.contrastive, contrastive)
    np.testing.assert_allclose(per_bin.kappa_all, kappa_all, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_bin.kappa_contrastive, kappa_contrastive, rtol=1e-5, atol=1e-6)
    assert (per_bin.kappa_contrastive < per_bin.kappa_all).all()  # the paper's Fig. 3


def test_overall_agreement_kappas_and_contrastive_set():
    preds, labels = three_accuracy_levels()
    analysis = analyse_agreement(preds, num_categories=NUM_CATEGORIES, k=K)
    table = reference.counts(preds, NUM_CATEGORIES)
    agreement = reference.agreement(table)
    np.testing.assert_allclose(analysis.agreement, agreement, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(analysis.n_raters, table.sum(1))
    assert np.isnan(analysis.agreement[11])  # one rater
    np.testing.assert_allclose(analysis.fleiss_kappa, reference.kappa(table), rtol=1e-5, atol=1e-6)

    # Randolph's free-marginal kappa, written out: chance agreement 1 / categories.
    p_bar = np.nanmean(agreement)
    randolph = (p_bar - 1 / NUM_CATEGORIES) / (1 - 1 / NUM_CATEGORIES)
    np.testing.assert_allclose(analysis.randolph_kappa, randolph, rtol=1e-5, atol=1e-6)
    assert abs(randolph - reference.kappa(table)) > 0.02  # Fleiss' value would not pass for it

    contrastive = reference.contrastive(agreement, K)
    np.testing.assert_array_equal(analysis.contrastive, contrastive)
    np.testing.assert_allclose(analysis.contrastive_kappa, reference.kappa(table[contrastive]), rtol=1e-5, atol=1e-6)
    assert analysis.accuracy is None and analysis.per_bin is None
