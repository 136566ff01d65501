"""Float64 NumPy references written straight from the formulas (loops where that is clearest)."""

import numpy as np


def counts(preds: np.ndarray, num_categories: int) -> np.ndarray:
    """[models, stimuli] -> [stimuli, categories], -1 not counted."""
    table = np.zeros((preds.shape[1], num_categories), np.int64)
    for m in range(preds.shape[0]):
        for i in range(preds.shape[1]):
            if preds[m, i] >= 0:
                table[i, preds[m, i]] += 1
    return table


def agreement(table: np.ndarray) -> np.ndarray:
    """Eq. 1 per stimulus; NaN where fewer than 2 raters."""
    table = np.asarray(table, np.float64)
    n = table.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ((table**2).sum(-1) - n) / (n * (n - 1))
    return np.where(n >= 2, p, np.nan)


def kappa(table: np.ndarray, method: str = "fleiss") -> float:
    table = np.asarray(table, np.float64)
    n = table.sum(-1)
    p_bar = np.nanmean(agreement(table)) if (n >= 2).any() else np.nan
    if method == "fleiss":
        if table.sum() == 0:
            return np.nan
        p_j = table.sum(0) / table.sum()
        p_e = (p_j**2).sum()
    else:
        p_e = 1.0 / table.shape[-1]
    if p_e >= 1.0:
        return np.nan
    return (p_bar - p_e) / (1.0 - p_e)


def error_consistency(correct: np.ndarray) -> np.ndarray:
    """Geirhos, Meding & Wichmann (2020), one pair at a time."""
    num_models = correct.shape[0]
    out = np.empty((num_models, num_models))
    for a in range(num_models):
        for b in range(num_models):
            c_obs = np.mean(correct[a] == correct[b])
            p1, p2 = correct[a].mean(), correct[b].mean()
            c_exp = p1 * p2 + (1 - p1) * (1 - p2)
            out[a, b] = np.nan if c_exp == 1 else (c_obs - c_exp) / (1 - c_exp)
    return out


def contrastive(agreement: np.ndarray, k: int) -> np.ndarray:
    """The k lowest-agreement stimuli, lowest first, ties to the lower index, NaN never (a stable
    sort with NaN last)."""
    return np.argsort(np.where(np.isnan(agreement), np.inf, agreement), kind="stable")[:k]


def accuracy(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of the labelled stimuli (label >= 0) each model gets right; no response is wrong."""
    labelled = labels >= 0
    return (preds[:, labelled] == labels[labelled]).mean(axis=1)


def equal_count_bins(acc: np.ndarray, num_bins: int) -> np.ndarray:
    """[bins, models]: models sorted by accuracy (ties by index), cut into num_bins consecutive
    groups, the first len % num_bins of them one model larger."""
    order = sorted(range(len(acc)), key=lambda m: (acc[m], m))
    sizes = [len(acc) // num_bins + (b < len(acc) % num_bins) for b in range(num_bins)]
    mask = np.zeros((num_bins, len(acc)), bool)
    start = 0
    for b, size in enumerate(sizes):
        mask[b, order[start : start + size]] = True
        start += size
    return mask


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s biased linear CKA in float64: centred features, ``|Y^T X|^2 / (|X^T X| |Y^T Y|)``."""
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))
