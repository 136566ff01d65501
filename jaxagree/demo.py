"""A generated prediction table: many models of varying accuracy on a few thousand stimuli.

It stands in for a real zoo's outputs in ``jaxagree demo`` and in tests. Stimuli differ in
difficulty and each has a few plausible wrong answers, so errors agree partly, as real models'
do; accurate models agree more because correct answers agree (the paper's floor on agreement).
"""

from __future__ import annotations

import numpy as np

from jaxagree.io import PredictionTable


def simulate_predictions(
    *,
    num_models: int = 120,
    num_stimuli: int = 4000,
    num_categories: int = 100,
    confusable: int = 3,
    no_response_rate: float = 0.001,
    seed: int = 0,
) -> PredictionTable:
    """Predictions of ``num_models`` simulated classifiers, with true labels.

    Model ``m`` answers stimulus ``i`` correctly with probability
    ``sigmoid(1.7 (skill_m - difficulty_i))``; a wrong answer is one of the stimulus's
    ``confusable`` look-alike categories with probability 0.7, any category otherwise.
    """
    if num_models < 2 or num_stimuli < 1 or num_categories < confusable + 1:
        raise ValueError("need num_models >= 2, num_stimuli >= 1, num_categories > confusable")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_categories, num_stimuli)
    difficulty = rng.normal(0.0, 1.0, num_stimuli) + 2.0 * (rng.random(num_stimuli) < 0.05)
    skill = np.sort(rng.uniform(-0.5, 2.5, num_models))
    p_right = 1.0 / (1.0 + np.exp(-1.7 * (skill[:, None] - difficulty[None, :])))
    right = rng.random((num_models, num_stimuli)) < p_right
    # Look-alikes: categories other than the label, with stimulus-specific preferences.
    lookalike = (labels[:, None] + rng.integers(1, num_categories, (num_stimuli, confusable))) % num_categories
    preference = rng.dirichlet(np.ones(confusable), num_stimuli)
    choice = (rng.random((num_models, num_stimuli, 1)) > preference.cumsum(1)[None]).sum(-1)
    choice = np.minimum(choice, confusable - 1)
    confused = lookalike[np.arange(num_stimuli)[None, :], choice]
    random_answer = rng.integers(0, num_categories, (num_models, num_stimuli))
    wrong = np.where(rng.random((num_models, num_stimuli)) < 0.7, confused, random_answer)
    preds = np.where(right, labels[None, :], wrong)
    preds = np.where(rng.random(preds.shape) < no_response_rate, -1, preds).astype(np.int32)
    width = len(str(num_models - 1))
    return PredictionTable(
        predictions=preds,
        labels=labels.astype(np.int32),
        models=[f"model_{m:0{width}d}" for m in range(num_models)],
        stimuli=[f"stimulus_{i:05d}" for i in range(num_stimuli)],
        categories=[f"category_{j:03d}" for j in range(num_categories)],
    )


__all__ = ["simulate_predictions"]
