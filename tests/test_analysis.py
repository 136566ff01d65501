"""The paper's agreement analysis (Fig. 3): overall and per accuracy bin, against float64."""

import numpy as np
import pytest

import jaxagree as ja
from jaxagree.analysis import analyse_agreement, analyse_cka
from jaxagree.io import FeatureSet

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


# ---------------------------------------------------------------------------------------------
# analyse_cka: what `jaxagree cka` computes


def two_families(num_stimuli: int = 40, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Five models in two families: each family shares a latent signal of its own (within-family
    CKA high), the families share a weaker common one (between-family CKA lower but not zero)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(num_stimuli, 3))
    own = {family: rng.normal(size=(num_stimuli, 4)) for family in ("conv", "vit")}
    families = {"c1": "conv", "v1": "vit", "c2": "conv", "v2": "vit", "c3": "conv"}
    features = {}
    for (name, family), dim in zip(families.items(), [6, 5, 4, 7, 3]):
        signal = np.concatenate([own[family], 0.5 * common], axis=1)
        features[name] = signal @ rng.normal(size=(7, dim)) + 0.3 * rng.normal(size=(num_stimuli, dim)) + 5.0
    return {k: v.astype(np.float32) for k, v in features.items()}, families


def test_analyse_cka_matrix_subset_and_family_summaries_against_float64():
    features, families = two_families()
    models = list(features)
    stimuli = np.array([3, 0, 17, 25, 8, 11, 30, 39, 21, 5, 14, 33])
    analysis = analyse_cka(features, stimuli=stimuli, families=families, mesh=None)

    expected = np.array([[reference.linear_cka(features[a][stimuli], features[b][stimuli]) for b in models]
                         for a in models])
    np.testing.assert_allclose(analysis.matrix, expected, rtol=0, atol=2e-6)
    assert analysis.models == models and analysis.families == [families[m] for m in models]
    np.testing.assert_array_equal(analysis.stimuli, stimuli)
    assert analysis.title == "linear CKA" and not analysis.debiased

    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    same = [expected[i, j] for i, j in pairs if families[models[i]] == families[models[j]]]
    other = [expected[i, j] for i, j in pairs if families[models[i]] != families[models[j]]]
    assert analysis.within_family == pytest.approx(np.mean(same), abs=2e-6)
    assert analysis.between_family == pytest.approx(np.mean(other), abs=2e-6)
    assert analysis.mean_off_diagonal == pytest.approx(np.mean(same + other), abs=2e-6)
    assert analysis.within_family > analysis.between_family + 0.1  # the fixture has families to find
    assert analysis.family_names == ["conv", "vit"]
    conv, vit = [0, 2, 4], [1, 3]
    np.testing.assert_allclose(analysis.family_means, [
        [np.mean([expected[i, j] for i in conv for j in conv if i < j]), expected[np.ix_(conv, vit)].mean()],
        [expected[np.ix_(conv, vit)].mean(), expected[1, 3]],
    ], rtol=0, atol=2e-6)
    # The subset matters: all stimuli give other numbers.
    assert np.abs(analyse_cka(features, mesh=None).matrix - analysis.matrix).max() > 1e-3


def test_analyse_cka_splits_over_every_device_with_the_same_answer(devices):
    features, families = two_families()
    one = analyse_cka(features, families=families, debiased=True, mesh=None)
    every = analyse_cka(features, families=families, debiased=True)  # "auto": the 4 fake devices
    np.testing.assert_allclose(every.matrix, one.matrix, rtol=0, atol=1e-6)
    assert every.debiased and every.title == "debiased linear CKA"
    np.testing.assert_allclose(one.matrix, ja.cka_matrix(list(features.values()), debiased=True), atol=1e-6)


def test_analyse_cka_takes_a_feature_set_an_array_or_a_sequence():
    features, _ = two_families()
    named = analyse_cka(FeatureSet(list(features), list(features.values())), mesh=None)
    assert named.models == list(features) and named.families is None and named.family_means is None
    stacked = np.stack([np.pad(f, ((0, 0), (0, 7 - f.shape[1]))) for f in features.values()])
    for unnamed in (stacked, list(stacked)):
        result = analyse_cka(unnamed, mesh=None)
        assert result.models == [f"model_{m}" for m in range(5)]
        np.testing.assert_allclose(result.matrix, named.matrix, atol=2e-6)  # zero columns change nothing


@pytest.mark.parametrize(("arguments", "message"), [
    ({"stimuli": [0, 40]}, r"stimuli: stimulus index 40 is outside \[0, 40\)"),
    ({"stimuli": [1, 1, 2]}, r"stimuli: stimulus indices repeat"),
    ({"stimuli": [0.5, 2.0]}, r"stimulus indices must be a 1-d integer array"),
    ({"stimuli": []}, r"no stimulus indices"),
    ({"families": {"c1": "conv"}}, r"families: no family for model\(s\) 'v1', 'c2', 'v2', 'c3'"),
    ({"families": ["conv", "vit"]}, r"one family per model \(5 models\)"),
    ({"mesh": "all"}, r"mesh must be 'auto', None or a jax.sharding.Mesh"),
])
def test_analyse_cka_bad_arguments_name_what_is_wrong(arguments, message):
    features, _ = two_families()
    with pytest.raises(ValueError, match=message):
        analyse_cka(features, **arguments)


def test_analyse_cka_mismatched_stimuli_name_the_model():
    features, _ = two_families()
    features["v2"] = features["v2"][:30]
    with pytest.raises(ValueError, match=r"model 'v2' has 30 stimuli but model 'c1' has 40"):
        analyse_cka(features, stimuli=[0, 1, 2, 3])
