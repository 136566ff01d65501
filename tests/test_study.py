"""The study (jaxagree.study) and its report on planted data: the claims follow the structure that
was planted, the summary holds what the library functions give, and the report's files are whole."""

import html
import json
import re

import numpy as np
import pytest

from jaxagree.analysis import analyse_agreement, compare_stimulus_sets
from jaxagree.study import run_study
from jaxagree.study_report import write_study_report

FAMILIES = ["conv", "attention", "mlp"]
PER_FAMILY, NUM_STIMULI, NUM_CATEGORIES, HARD = 5, 300, 10, 30


def planted(family_signal: float, seed: int = 0):
    """15 models in 3 families whose accuracies spread over 0.5-0.95. On the first HARD stimuli
    each family has its own wrong answer and, with ``family_signal``, its own feature direction;
    elsewhere every model sees the stimulus alike (convergent representations)."""
    rng = np.random.default_rng(seed)
    families = [f for f in FAMILIES for _ in range(PER_FAMILY)]
    labels = rng.integers(0, NUM_CATEGORIES, NUM_STIMULI)
    accuracy = np.linspace(0.5, 0.95, len(families))[rng.permutation(len(families))]
    right = rng.random((len(families), NUM_STIMULI)) < accuracy[:, None]
    family_answer = (labels[None, :HARD] + 1 + np.arange(3)[:, None]) % NUM_CATEGORIES
    preds = np.where(right, labels, rng.integers(0, NUM_CATEGORIES, right.shape))
    for m, family in enumerate(families):
        preds[m, :HARD] = np.where(rng.random(HARD) < 0.8, family_answer[FAMILIES.index(family)], preds[m, :HARD])
    shared = rng.normal(size=(NUM_STIMULI, 8))
    directions = rng.normal(size=(3, NUM_STIMULI, 8))
    features = []
    for family in families:
        x = shared + 0.3 * rng.normal(size=(NUM_STIMULI, 8))
        x[:HARD] += family_signal * directions[FAMILIES.index(family), :HARD]
        features.append(x.astype(np.float32))
    probe = [rng.normal(size=(40, 8)).astype(np.float32) for _ in families]
    metadata = [{"parameters": 1000 * (m + 1), "steps": 100 * (1 + m % 3)} for m in range(len(families))]
    return families, preds.astype(np.int32), labels.astype(np.int32), features, probe, metadata


def _study(signal: float, seed: int = 0):
    families, preds, labels, features, probe, metadata = planted(signal, seed)
    models = [f"{f}-{i}" for i, f in enumerate(families)]
    study = run_study(models=models, families=families, predictions=preds, labels=labels,
                      num_categories=NUM_CATEGORIES, features=features, probes={"squares": probe}, metadata=metadata,
                      k=HARD, num_bins=3, num_bootstrap=60, num_permutations=100, seed=seed)
    return study, (families, preds, labels, features, probe)


@pytest.fixture(scope="module")
def planted_study():
    return _study(0.5)


def test_claims_follow_the_planted_structure(planted_study):
    study, _ = planted_study
    held = {c.key: c.held for c in study.claims}
    assert held["contrastive_separate_families"] is True
    assert held["ordinary_stimuli_converge"] is True
    assert held["contrastive_beat_squares"] is True
    assert held["contrastive_agreement_is_low"] is True
    assert np.mean(study.sets["contrastive"] < HARD) >= 0.8  # mostly the planted stimuli
    # Without a family signal in the features, nothing separates the families on either set.
    null, _ = _study(0.0, seed=1)
    assert {c.key: c.held for c in null.claims}["contrastive_separate_families"] is False


def test_summary_holds_what_the_library_gives(planted_study, tmp_path):
    study, (families, preds, labels, features, probe) = planted_study
    images = np.zeros((12, 8, 8, 3), np.uint8)
    written = write_study_report(study, tmp_path, images=images, labels=labels, predictions=preds,
                                 categories=[str(c) for c in range(NUM_CATEGORIES)], title="planted study",
                                 extra={"wall_seconds": 1.5}, notes=["a note"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    direct = analyse_agreement(preds, num_categories=NUM_CATEGORIES, labels=labels, k=HARD, num_bins=3,
                               num_bootstrap=60, seed=0)
    assert summary["num_models"] == 15 and summary["k"] == HARD and summary["wall_seconds"] == 1.5
    np.testing.assert_allclose(summary["kappa_all"], direct.per_bin.kappa_all, atol=1e-6)
    np.testing.assert_allclose(summary["kappa_contrastive"], direct.per_bin.kappa_contrastive, atol=1e-6)
    bins = summary["agreement"]["accuracy_bins"]
    np.testing.assert_allclose([b["fleiss_kappa_contrastive_interval"] for b in bins],
                               np.stack([direct.bootstrap.kappa_contrastive.low[1:],
                                         direct.bootstrap.kappa_contrastive.high[1:]], 1), atol=1e-6)
    sets = {"all": np.arange(NUM_STIMULI), "contrastive": np.sort(direct.contrastive),
            "random": study.sets["random"], "squares": [p[:HARD] for p in probe]}
    comparison = compare_stimulus_sets(features, families, sets, baseline="random", num_bootstrap=60, seed=0,
                                       num_permutations=100)
    for name, result in comparison.sets.items():
        got = summary["identifiability"]["sets"][name]["scores"]["auc"]
        assert got["value"] == pytest.approx(float(result.scores.auc), abs=1e-6)
        assert [got["low"], got["high"]] == pytest.approx([result.low.auc, result.high.auc], abs=1e-6)
    assert set(summary["claims"]) == {c.key for c in study.claims}
    assert all(isinstance(c["held"], bool) for c in summary["claims"].values())

    for name in ("fig1_cka_by_set.png", "identify_scores.png", "fig2_accuracy_by_budget.png",
                 "fig3_kappa_by_accuracy.png", "fig4_agreement_sorted.png", "gallery.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    assert not re.search(r"""src=["'](?!data:)""", page)  # self-contained: nothing fetched
    for claim in study.claims:
        assert html.escape(claim.statement) in page and claim.statement in (tmp_path / "report.md").read_text()
    assert "did NOT hold" in page or all(c.held for c in study.claims)
    assert set(written) >= {"summary", "report.md", "report.html"}


def test_bad_input_names_what_is_wrong():
    families, preds, labels, features, probe, _ = planted(1.0)
    common = {"models": [str(i) for i in range(15)], "predictions": preds, "labels": labels,
              "num_categories": NUM_CATEGORIES, "num_bootstrap": 10, "num_permutations": 10, "k": HARD}
    with pytest.raises(ValueError, match="14 families"):
        run_study(families=families[:14], features=features, **common)
    with pytest.raises(ValueError, match="probe 'squares' has 10 stimuli"):
        run_study(families=families, features=features, probes={"squares": [p[:10] for p in probe]}, **common)
    with pytest.raises(ValueError, match="probe 'squares' has features of 3 models"):
        run_study(families=families, features=features, probes={"squares": probe[:3]}, **common)
