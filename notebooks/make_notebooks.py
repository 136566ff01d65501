"""Writes the numbered notebooks of this folder from the cells below (the notebooks are generated:
edit this file, then run ``.venv/bin/python notebooks/make_notebooks.py``).

Each notebook starts with a markdown cell saying what it shows and has one code cell tagged
``parameters`` (papermill's convention) holding its sizes; ``tests/test_notebooks.py`` runs every
notebook with small sizes injected after that cell. The notebooks are written without outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

AGREEMENT = [
    ("md", """\
# 1. From predictions to contrastive stimuli

A table of predictions (models x stimuli, one class per cell, -1 for no response) is all the
agreement analysis needs. This notebook simulates such a table (`jaxagree.demo.simulate_predictions`:
classifiers of varied skill on stimuli of varied difficulty), then with one call of
`jaxagree.analysis.analyse_agreement`:

* per-stimulus agreement (Eq. 1 of the paper) and Fleiss' kappa over all models;
* the `K` **contrastive stimuli**: the ones with the lowest agreement;
* models binned by accuracy, kappa per bin over all stimuli and over each bin's own contrastive
  stimuli, with bootstrap intervals over stimuli.

It draws the paper's Fig. 3 (kappa per accuracy bin, all vs contrastive stimuli) and Fig. 4
(per-stimulus agreement, sorted). With real models, replace the simulated table by
`jaxagree.io` readers or by `jaxagree.pipeline.extract` (notebook 4)."""),
    ("params", """\
NUM_MODELS = 120       # simulated classifiers
NUM_STIMULI = 4000
NUM_CATEGORIES = 100
NUM_BINS = 6           # accuracy bins
K = 80                 # contrastive stimuli (2% of the stimuli, as the paper's 1,000 of 50,000)
NUM_BOOTSTRAP = 100    # replicates of each interval
OUT = "figures"        # where the figures are saved"""),
    ("code", """\
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import jaxagree as ja
from jaxagree.analysis import analyse_agreement
from jaxagree.demo import simulate_predictions

out = Path(OUT)
out.mkdir(parents=True, exist_ok=True)"""),
    ("md", "## Predictions\n\n`table.predictions` is `int32 [models, stimuli]`; `table.labels` the true classes."),
    ("code", """\
table = simulate_predictions(num_models=NUM_MODELS, num_stimuli=NUM_STIMULI, num_categories=NUM_CATEGORIES, seed=0)
preds, labels = table.predictions, table.labels
accuracy = ja.model_accuracy(preds, labels, num_categories=NUM_CATEGORIES)
print(preds.shape, f"accuracy from {float(accuracy.min()):.2f} to {float(accuracy.max()):.2f}")"""),
    ("md", "## The analysis: one call"),
    ("code", """\
analysis = analyse_agreement(preds, num_categories=NUM_CATEGORIES, labels=labels, k=K,
                             num_bins=NUM_BINS, num_bootstrap=NUM_BOOTSTRAP, seed=0)
boot = analysis.bootstrap  # subset 0: all models; subset 1 + b: accuracy bin b
print(f"Fleiss' kappa over all {preds.shape[1]} stimuli: {analysis.fleiss_kappa:.3f} "
      f"[{boot.kappa_all.low[0]:.3f}, {boot.kappa_all.high[0]:.3f}]")
print(f"Fleiss' kappa over the {analysis.k} contrastive stimuli: {analysis.contrastive_kappa:.3f} "
      f"[{boot.kappa_contrastive.low[0]:.3f}, {boot.kappa_contrastive.high[0]:.3f}]")
print("lowest-agreement stimuli:", [table.stimuli[i] for i in analysis.contrastive[:5]])"""),
    ("md", """\
The same numbers from the kernels, without the analysis wrapper: counts of each category per
stimulus, agreement per stimulus, kappa, and the `K` lowest-agreement stimuli."""),
    ("code", """\
stats = ja.agreement_stats(preds, num_categories=NUM_CATEGORIES)
agreement = ja.per_stimulus_agreement(stats)
assert np.allclose(float(ja.fleiss_kappa(stats)), analysis.fleiss_kappa)
assert np.array_equal(np.asarray(ja.contrastive_stimuli(agreement, K)), analysis.contrastive)"""),
    ("md", """\
## Fig. 3: agreement per accuracy bin

Within every accuracy bin the models agree far less on the contrastive stimuli than on all
stimuli. The bands are the bootstrap intervals over stimuli (the contrastive set is chosen again
in every replicate)."""),
    ("code", """\
bins = analysis.per_bin
centre = (bins.bins.lower + bins.bins.upper) / 2
fig, ax = plt.subplots(figsize=(6, 4))
for values, interval, label in [(bins.kappa_all, boot.kappa_all, "all stimuli"),
                                (bins.kappa_contrastive, boot.kappa_contrastive, f"contrastive (k={analysis.k})")]:
    line, = ax.plot(centre, values, "o-", label=label)
    ax.fill_between(centre, interval.low[1:], interval.high[1:], color=line.get_color(), alpha=0.2)
ax.set(xlabel="model accuracy (bin centre)", ylabel="Fleiss' kappa", title="Agreement by accuracy")
ax.legend()
fig.savefig(out / "fig3_kappa_by_bin.png", dpi=100)
plt.show()"""),
    ("md", """\
## Fig. 4: per-stimulus agreement, sorted

Left: one row per accuracy bin, stimuli in one order (by the agreement of all models), so a
column is one stimulus. Right: each bin's agreement sorted on its own."""),
    ("code", """\
order = np.argsort(analysis.agreement, kind="stable")  # NaN (fewer than 2 responses) last
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3), gridspec_kw={"width_ratios": [3, 2]})
image = left.imshow(bins.agreement[:, order], aspect="auto", interpolation="nearest", vmin=0, vmax=1)
left.set_yticks(range(len(centre)), bins.bins.names())
left.set(xlabel="stimuli, sorted by agreement of all models", ylabel="models of accuracy")
fig.colorbar(image, ax=left, label="agreement (Eq. 1)")
for row, name in zip(bins.agreement, bins.bins.names()):
    right.plot(np.sort(row[~np.isnan(row)]), label=name, lw=1)
right.set(xlabel="stimulus rank within bin", ylabel="agreement")
right.legend(fontsize=6)
fig.tight_layout()
fig.savefig(out / "fig4_sorted_agreement.png", dpi=100)
plt.show()"""),
    ("md", """\
`jaxagree agreement PREDICTIONS --out DIR` computes the same analysis from a file and writes these
figures with `jaxagree.report`; error consistency of every model pair is in
`boot.error_consistency` (and `ja.error_consistency(preds == labels)`)."""),
]

CKA = [
    ("md", """\
# 2. All-pairs CKA of many models

Linear CKA (Kornblith et al. 2019) between every pair of models, from their features on the same
stimuli. This notebook builds synthetic features for `NUM_MODELS` models in four families (models of
a family share most of a random projection of common latent stimuli; feature dims differ between
families) and computes the `[models, models]` CKA matrix three ways:

1. `ja.cka_matrix`: all at once;
2. `ja.cka_matrix(..., max_bytes=...)`: blocks of models that never hold more than `max_bytes`;
3. `ja.CKAAccumulator`: streaming over blocks of stimuli (for more stimuli than memory holds).

They agree to float32 rounding. Then a heatmap ordered by family, and the within- and
between-family means of `jaxagree.analysis.analyse_cka`."""),
    ("params", """\
NUM_MODELS = 100
NUM_STIMULI = 4000
LATENT = 32            # dimension of the stimuli's common latent description
BLOCK = 500            # stimuli per streamed block
MAX_BYTES = 2**22      # memory bound of the blocked cka_matrix (4 MiB)
OUT = "figures\""""),
    ("code", """\
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import jaxagree as ja
from jaxagree.analysis import analyse_cka

out = Path(OUT)
out.mkdir(parents=True, exist_ok=True)"""),
    ("md", "## Synthetic, family-structured features"),
    ("code", """\
rng = np.random.default_rng(0)
FAMILY_DIMS = {"conv": 48, "attention": 64, "mlp": 32, "hybrid": 40}      # feature dims per family
latent = rng.normal(size=(NUM_STIMULI, LATENT))                            # the stimuli
projection = {f: rng.normal(size=(LATENT, d)) for f, d in FAMILY_DIMS.items()}  # each family's view
family_of, features = [], []
for m in range(NUM_MODELS):
    family = list(FAMILY_DIMS)[m % len(FAMILY_DIMS)]
    own = projection[family] + 0.8 * rng.normal(size=projection[family].shape)  # the model's own view
    x = np.tanh(latent @ own / np.sqrt(LATENT)) + 0.3 * rng.normal(size=(NUM_STIMULI, own.shape[1]))
    family_of.append(family)
    features.append(x.astype(np.float32))                               # [stimuli, dim of its family]
names = [f"{f}_{m:02d}" for m, f in enumerate(family_of)]
print(f"{len(features)} models, {NUM_STIMULI} stimuli, dims {FAMILY_DIMS}")"""),
    ("md", "## Three ways to the same matrix"),
    ("code", """\
def timed(f):
    start = time.perf_counter()
    result = np.asarray(f())
    return result, time.perf_counter() - start

dense, t_dense = timed(lambda: ja.cka_matrix(features))
bounded, t_bounded = timed(lambda: ja.cka_matrix(features, max_bytes=MAX_BYTES))

def streamed():
    stream = ja.CKAAccumulator(NUM_MODELS, estimator="exact")
    for start in range(0, NUM_STIMULI, BLOCK):
        stream.update([x[start:start + BLOCK] for x in features])
    return stream.compute()

streaming, t_stream = timed(streamed)
for name, matrix, seconds in [("dense", dense, t_dense), (f"max_bytes={MAX_BYTES}", bounded, t_bounded),
                              (f"streamed, {BLOCK} stimuli a block", streaming, t_stream)]:
    print(f"{name:32s} {seconds:6.2f} s   max |difference from dense| = {np.abs(matrix - dense).max():.1e}")
assert np.allclose(bounded, dense, atol=1e-5) and np.allclose(streaming, dense, atol=1e-4)"""),
    ("md", """\
`estimator="exact"` keeps feature-space sums (memory grows with the square of the summed dims);
`estimator="minibatch"` (Nguyen et al. 2021) keeps only a `[models, models]` matrix whatever the
dims and estimates the population CKA (close to the debiased CKA of these stimuli). For `jit`
and `shard_map`, `ja.cka_stream` gives the same as pure functions of a mergeable `ja.CKAState`."""),
    ("code", """\
minibatch = ja.CKAAccumulator(NUM_MODELS, estimator="minibatch")
for start in range(0, NUM_STIMULI, BLOCK):
    minibatch.update([x[start:start + BLOCK] for x in features])
difference = np.asarray(minibatch.compute()) - np.asarray(ja.cka_matrix(features, debiased=True))
print(f"minibatch vs debiased CKA: max |difference| = {np.abs(difference).max():.3f}")"""),
    ("md", "## Heatmap, models ordered by family"),
    ("code", """\
analysis = analyse_cka(dict(zip(names, features)), families=dict(zip(names, family_of)), max_bytes=MAX_BYTES)
order = np.argsort(analysis.families, kind="stable")
ordered = [analysis.families[i] for i in order]
starts = [i for i in range(len(ordered)) if i == 0 or ordered[i] != ordered[i - 1]]
fig, ax = plt.subplots(figsize=(6.5, 5.5))
image = ax.imshow(analysis.matrix[np.ix_(order, order)], cmap="magma", vmin=0, vmax=1)
for start in starts[1:]:
    ax.axhline(start - 0.5, color="white", lw=0.8)
    ax.axvline(start - 0.5, color="white", lw=0.8)
centres = [(a + b - 1) / 2 for a, b in zip(starts, starts[1:] + [len(ordered)])]
ax.set_yticks(centres, [ordered[i] for i in starts])
ax.set(title="linear CKA, models ordered by family", xticks=[])
fig.colorbar(image, ax=ax)
fig.savefig(out / "cka_by_family.png", dpi=100)
plt.show()
print(f"mean CKA within families {analysis.within_family:.3f}, between {analysis.between_family:.3f}")
print(analysis.family_names)
print(np.round(analysis.family_means, 3))"""),
    ("md", """\
`jaxagree cka FEATURES --out DIR --families families.csv` does the same from files; with several
devices `analyse_cka` and `cka_matrix(..., mesh=ja.stimulus_mesh())` split the work over them."""),
]

IDENTIFY = [
    ("md", """\
# 3. Which stimuli tell model families apart?

The paper's claim: the contrastive stimuli separate model families, which ordinary stimuli (or a
random draw of the same size) do not. `jaxagree.analysis.compare_stimulus_sets` measures it: for
each stimulus set, the models' all-pairs CKA over the set and its identifiability scores (AUC of
within- against between-family pairs, 1-NN identification rate, silhouette, ...), each with a
bootstrap interval over the set's stimuli, and each set against a baseline.

Here the features are synthetic with a **planted** contrastive subset: on most stimuli every model
represents the same thing (plus noise); on `NUM_CONTRASTIVE` stimuli each family adds a
component of its own (and each model one of its own). We compare `all` stimuli (the planted ones
among them), the planted `contrastive` set and `random_sets` draws of the same size, disjoint from
it. Last, `ja.stimuli_needed` asks how many stimuli a study needs."""),
    ("params", """\
NUM_MODELS = 24
NUM_STIMULI = 1000
NUM_CONTRASTIVE = 60
DIM = 32
NUM_RANDOM = 3          # random baselines of the contrastive set's size
NUM_BOOTSTRAP = 200
NUM_PERMUTATIONS = 500
NUM_SIZES = 5           # subset sizes measured by stimuli_needed
OUT = "figures\""""),
    ("code", """\
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import jaxagree as ja
from jaxagree.analysis import compare_stimulus_sets, random_sets

out = Path(OUT)
out.mkdir(parents=True, exist_ok=True)"""),
    ("md", "## Features with a planted contrastive subset"),
    ("code", """\
rng = np.random.default_rng(0)
FAMILIES = ["conv", "attention", "mlp"]
groups = [FAMILIES[m % len(FAMILIES)] for m in range(NUM_MODELS)]
planted = np.sort(rng.choice(NUM_STIMULI, NUM_CONTRASTIVE, replace=False))
shared = rng.normal(size=(NUM_STIMULI, DIM))                     # what every model sees
by_family = {f: rng.normal(size=(NUM_STIMULI, DIM)) for f in FAMILIES}  # what a family sees
features = np.empty((NUM_MODELS, NUM_STIMULI, DIM), np.float32)
for m, family in enumerate(groups):
    signal = shared.copy()
    own = 1.5 * rng.normal(size=(NUM_CONTRASTIVE, DIM))            # what this model alone sees
    signal[planted] += 0.4 * (by_family[family][planted] + own)
    features[m] = signal + rng.normal(size=signal.shape)
print(features.shape, "planted contrastive stimuli:", planted[:8], "...")"""),
    ("md", "## All, contrastive and random sets, with intervals"),
    ("code", """\
sets = {"all": np.arange(NUM_STIMULI), "contrastive": planted,
        **random_sets(NUM_STIMULI, NUM_CONTRASTIVE, NUM_RANDOM, seed=1, exclude=planted)}
comparison = compare_stimulus_sets(features, groups, sets, baseline="random_0", num_bootstrap=NUM_BOOTSTRAP,
                                   num_permutations=NUM_PERMUTATIONS, seed=0)
for name, result in comparison.sets.items():
    print(f"{name:12s} {result.num_stimuli:5d} stimuli  AUC {float(result.scores.auc):.3f} "
          f"[{result.low.auc:.3f}, {result.high.auc:.3f}]  p={float(result.scores.p_value):.3g}  "
          f"1-NN {float(result.scores.knn_accuracy):.2f}  silhouette {float(result.scores.silhouette):.3f}")
versus = comparison.versus_baseline["contrastive"]
print(f"contrastive - random_0: AUC {float(versus.difference.auc):+.3f} "
      f"[{versus.low.auc:+.3f}, {versus.high.auc:+.3f}], p={versus.p_value.auc:.3g}")"""),
    ("md", """\
Each interval is for the score at the set's own size (a resample blurs CKA, so the replicates'
spread is placed at the estimate): compare sets of one size with each other, here `contrastive`
with the `random_*` draws. `all` holds the planted stimuli too, so its AUC can be high, but its
silhouette shows how much the many shared stimuli dilute the family structure."""),
    ("code", """\
fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
names = list(comparison.sets)
for ax, score in zip(axes, ["auc", "knn_accuracy", "silhouette"]):
    for i, name in enumerate(names):
        result = comparison.sets[name]
        value = float(getattr(result.scores, score))
        low, high = getattr(result.low, score), getattr(result.high, score)
        ax.errorbar(i, value, yerr=[[value - low], [high - value]], fmt="o", capsize=3,
                    color="tab:grey" if name.startswith("random") else "tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_title(score)
fig.suptitle(f"Identifiability per stimulus set ({comparison.confidence:.0%} bootstrap intervals)")
fig.tight_layout()
fig.savefig(out / "identify_scores.png", dpi=100)
plt.show()"""),
    ("md", """\
## How many stimuli does a study need?

`ja.stimuli_needed` measures the interval of a score at nested random subsets of a pilot pool and
fits its width as `c / sqrt(n)`. Here the pool is the contrastive set (a curated set is its own
pool); the silhouette follows the square-root law closely. Every size compiles its own kernels,
so a few sizes are quick."""),
    ("code", """\
sizes = np.unique(np.geomspace(16, NUM_CONTRASTIVE, NUM_SIZES).astype(int))
plan = ja.stimuli_needed(features[:, planted], groups, width=0.05, score="silhouette", sizes=sizes,
                         num_bootstrap=NUM_BOOTSTRAP // 2, seed=0)
for n, low, high in zip(plan.sizes, plan.low, plan.high):
    print(f"{n:5d} stimuli: silhouette interval [{low:.3f}, {high:.3f}]")
print(f"width 0.05 needs about {plan.needed} stimuli" + (" (extrapolated)" if plan.extrapolated else "")
      + f"; the interval clears chance from {plan.separates_at} stimuli")"""),
    ("md", """\
`jaxagree identify FEATURES --families ZOO --stimuli contrastive=FILE --random 5 --out DIR` runs the
comparison from files and writes these figures and tables (`jaxagree.report`)."""),
]

ZOO = [
    ("md", """\
# 4. A zoo of models, extracted and cached

Everything from a zoo file: this notebook writes a `zoo.toml` of jaxagree's tiny native Flax
models (random weights, no download, no model hub) into a temporary folder, reads it with
`jaxagree.models.read_zoo`, and runs every model over synthetic stimuli (squares, generated in
JAX) with `jaxagree.pipeline.extract`: predictions and penultimate features, with progress bars,
each finished model cached at once.

A run that stops part-way (here: a run over the first models only, as if it had been stopped)
resumes where it stopped: the second run computes only the missing models, and a third computes
nothing. Then the agreement and CKA analyses of the extracted outputs. (The models are untrained,
so the numbers only show the plumbing; `jaxagree demo` trains a zoo and runs the whole study.)"""),
    ("params", """\
ARCHITECTURES = ["convnet", "vit", "mixer"]  # jaxagree's native Flax zoo, tiny variants
NUM_SEEDS = 2          # models per architecture (each seed: other random weights)
NUM_STIMULI = 256
IMAGE_SIZE = 32
BATCH_SIZE = 64
WORKDIR = None         # None: a fresh temporary folder"""),
    ("code", """\
import tempfile
from pathlib import Path

import numpy as np

from jaxagree.analysis import analyse_agreement, analyse_cka
from jaxagree.data import open_stimuli
from jaxagree.models import read_zoo
from jaxagree.pipeline import extract

work = Path(WORKDIR or tempfile.mkdtemp(prefix="jaxagree-zoo-"))
work.mkdir(parents=True, exist_ok=True)
print(work)"""),
    ("md", "## The zoo file"),
    ("code", """\
FAMILY = {"convnet": "conv", "vit": "attention", "mixer": "mlp"}
ENTRY = '''[[model]]
name = "{architecture}-{seed}"
source = "native:{architecture}/tiny"
family = "{family}"
seed = {seed}
num_classes = 10
'''
zoo_file = work / "zoo.toml"
zoo_file.write_text("\\n".join(ENTRY.format(architecture=a, family=FAMILY[a], seed=s)
                               for s in range(NUM_SEEDS) for a in ARCHITECTURES))
print(zoo_file.read_text()[:200], "...")
zoo = read_zoo(zoo_file)  # every entry checked here, before any model is built
print([(spec.name, spec.family) for spec in zoo])"""),
    ("md", """\
## Stimuli

A `SOURCE` string opens a stimulus set: `synthetic:...`, `npz:FILE`, `folder:PATH`, `tfds:...`."""),
    ("code", """\
stimuli = open_stimuli(f"synthetic:squares?n={NUM_STIMULI}&size={IMAGE_SIZE}&square=5&count=2&seed=0")
print(len(stimuli), "stimuli")"""),
    ("md", """\
## Extraction, stopped part-way and resumed

The first run covers only the first half of the zoo, as a run stopped part-way would have. Each
finished model is in `cache/` (plain `.npy` files with checksums)."""),
    ("code", """\
cache = work / "cache"
half = len(zoo) // 2
first = extract(zoo[:half], stimuli, cache_dir=cache, batch_size=BATCH_SIZE)
print("first run computed:", [m for m, rate in first.images_per_second.items() if rate is not None])"""),
    ("code", """\
second = extract(zoo, stimuli, cache_dir=cache, batch_size=BATCH_SIZE)
ran = [m for m, rate in second.images_per_second.items() if rate is not None]
print("second run computed:", ran)
print("second run read from the cache:", [m for m, rate in second.images_per_second.items() if rate is None])
assert ran == [spec.name for spec in zoo[half:]]"""),
    ("code", """\
third = extract(zoo, stimuli, cache_dir=cache, batch_size=BATCH_SIZE, progress=False)
assert all(rate is None for rate in third.images_per_second.values())
assert np.array_equal(third.predictions, second.predictions)
print("third run: nothing computed, every model from the cache")
stimulus_set = next(cache.iterdir())  # one folder per stimulus set, named by a hash of its images
print(stimulus_set.name, sorted(p.name for p in stimulus_set.iterdir()))
print(zoo[0].name, sorted(p.name for p in (stimulus_set / zoo[0].name).iterdir()))"""),
    ("md", """\
## Agreement and CKA of the extracted outputs

`predictions` is `int32 [models, stimuli]` and `features["penultimate"]` one `[stimuli, dim]`
array per model: what notebooks 1 and 2 analysed."""),
    ("code", """\
agreement = analyse_agreement(third.predictions, num_categories=max(third.num_classes), k=NUM_STIMULI // 10)
print(f"Fleiss' kappa {agreement.fleiss_kappa:.3f}; on the {agreement.k} contrastive stimuli "
      f"{agreement.contrastive_kappa:.3f}")
features = dict(zip(third.models, third.features["penultimate"]))
families = {spec.name: spec.family for spec in zoo}
cka = analyse_cka(features, families=families)
cka_contrastive = analyse_cka(features, families=families, stimuli=agreement.contrastive)
print("CKA family means over all stimuli:", cka.family_names)
print(np.round(cka.family_means, 3))
print(f"within / between families: all stimuli {cka.within_family:.3f} / {cka.between_family:.3f}; "
      f"contrastive {cka_contrastive.within_family:.3f} / {cka_contrastive.between_family:.3f}")"""),
    ("md", """\
From the command line: `jaxagree extract --zoo zoo.toml --stimuli SOURCE --out run/`, then
`jaxagree agreement`, `jaxagree cka` and `jaxagree identify` on what it writes."""),
]

NOTEBOOKS = {
    "01_agreement.ipynb": AGREEMENT,
    "02_cka_many_models.ipynb": CKA,
    "03_identifiability.ipynb": IDENTIFY,
    "04_zoo_and_extraction.ipynb": ZOO,
}


def build(cells) -> nbformat.NotebookNode:
    """A notebook (nbformat 4, no outputs) from ``(kind, source)`` pairs; kind ``params`` is a code
    cell tagged ``parameters``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    for number, (kind, source) in enumerate(cells):
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        cell.id = f"cell-{number:02d}"  # stable ids: regenerating changes nothing
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else HERE
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), folder / name)
        print(folder / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
