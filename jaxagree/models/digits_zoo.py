"""The zoo ``jaxagree demo`` trains offline: conv nets, ViTs and MLP-Mixers of several sizes, each
trained on cluttered handwritten digits (:mod:`jaxagree.data.digits`) with budgets that differ
in steps and data, so that accuracies spread over tens of points, as a real zoo's do.

The zoo is data (:data:`ARCHITECTURES`, :data:`BUDGETS`, :func:`digits_zoo`);
:func:`train_digits_zoo` trains it with :func:`jaxagree.models.train.train_zoo`. The held-out
canvases show digits of the pool split, which no training canvas shows (the study's stimuli come
from the same split, with another seed).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from jaxagree.models.inventory import ModelSpec
from jaxagree.models.train import TrainResult, TrainSpec, train_zoo

TRAIN_SOURCE = "synthetic:digits?split=train&n=20000&size=32&seed=0"
HELDOUT_SOURCE = "synthetic:digits?split=pool&n=1000&size=32&seed=1"
# The stimuli a study of the zoo looks at: pool digits, canvases other than the held-out ones.
POOL_SOURCE = "synthetic:digits?split=pool&n=2000&size=32&seed=0"
QUICK_TRAIN_SOURCE = "synthetic:digits?split=train&n=4000&size=32&seed=0"
QUICK_HELDOUT_SOURCE = "synthetic:digits?split=pool&n=500&size=32&seed=1"
# Every model sees the whole 32x32 canvas (no ImageNet-style centre crop).
_CANVAS = {"image_size": 32, "crop_fraction": 1.0}


class Architecture(NamedTuple):
    """One architecture of the zoo: ``source`` (``native:ARCH/VARIANT``), ``family``, the
    architecture ``options`` over the variant's (a zoo entry's ``architecture`` table), and the
    peak ``learning_rate`` it trains at."""

    source: str
    family: str
    options: dict
    learning_rate: float


class Budget(NamedTuple):
    """How much training: ``steps`` of ``batch_size``, on the first ``data_fraction`` of the
    training canvases, for each of ``seeds``."""

    steps: int
    data_fraction: float
    seeds: tuple[int, ...]
    batch_size: int = 64


# Sizes chosen to train on two CPU cores in minutes (measured per step at batch 64, busy cores):
# patch 8 keeps attention and mixing to 16 tokens; the conv nets stay at 8-32 channels.
# ViTs and mixers train at 2e-3: at higher rates mixers stayed at chance on cluttered canvases.
ARCHITECTURES: dict[str, Architecture] = {
    "conv-xs": Architecture("native:convnet/tiny", "conv", {"widths": [8, 16], "depth": 1}, 5e-3),
    "conv-s": Architecture("native:convnet/tiny", "conv", {"widths": [16, 32], "depth": 1}, 5e-3),
    "conv-3": Architecture("native:convnet/tiny", "conv", {"widths": [8, 16, 32], "depth": 1}, 5e-3),
    "vit-xs": Architecture("native:vit/tiny", "attention", {"patch": 8, "dim": 32, "depth": 2, "heads": 2}, 2e-3),
    "vit-s": Architecture("native:vit/tiny", "attention", {"patch": 8, "dim": 48, "depth": 3, "heads": 3}, 2e-3),
    "mixer-xs": Architecture("native:mixer/tiny", "mlp", {"patch": 8, "dim": 32, "depth": 2, "token_hidden": 32,
                                                          "channel_hidden": 64}, 2e-3),
    "mixer-s": Architecture("native:mixer/tiny", "mlp", {"patch": 4, "dim": 32, "depth": 2, "token_hidden": 64,
                                                         "channel_hidden": 128}, 2e-3),
}
BUDGETS: dict[str, Budget] = {
    "short": Budget(200, 0.1, (0, 1)),
    "mid": Budget(500, 0.5, (0,)),
    "long": Budget(1500, 1.0, (0,)),
}
QUICK_ARCHITECTURES = ("conv-xs", "vit-xs", "mixer-xs")
QUICK_BUDGETS: dict[str, Budget] = {"quick": Budget(100, 1.0, (0, 1))}


def digits_zoo(*, quick: bool = False) -> list[TrainSpec]:
    """The demo's zoo as :class:`~jaxagree.models.train.TrainSpec` values, named
    ``ARCHITECTURE-BUDGET-sSEED``: every architecture of :data:`ARCHITECTURES` with every budget
    of :data:`BUDGETS` (28 models); ``quick``: three architectures, one short budget, two seeds
    (6 models, for tests and ``--quick``)."""
    names = QUICK_ARCHITECTURES if quick else tuple(ARCHITECTURES)
    budgets = QUICK_BUDGETS if quick else BUDGETS
    specs = []
    for name in names:
        arch = ARCHITECTURES[name]
        for label, budget in budgets.items():
            for seed in budget.seeds:
                model = ModelSpec(f"{name}-{label}-s{seed}", arch.source, arch.family,
                                  {"seed": seed, "num_classes": 10, "architecture": {**_CANVAS, **arch.options}},
                                  {"architecture": name, "budget": label})
                specs.append(TrainSpec(model, budget.steps, arch.learning_rate, budget.data_fraction,
                                       budget.batch_size))
    return specs


def train_digits_zoo(out_dir: str | os.PathLike, *, quick: bool = False, progress: bool = True) -> list[TrainResult]:
    """Train :func:`digits_zoo` into ``out_dir`` (reusing models found finished there) and write
    ``out_dir/zoo.toml``; see :func:`~jaxagree.models.train.train_zoo`. The full zoo takes about
    6 minutes on two CPU cores, the quick one well under a minute."""
    return train_zoo(digits_zoo(quick=quick), QUICK_TRAIN_SOURCE if quick else TRAIN_SOURCE,
                     heldout=QUICK_HELDOUT_SOURCE if quick else HELDOUT_SOURCE, out_dir=out_dir, progress=progress)


__all__ = ["ARCHITECTURES", "BUDGETS", "HELDOUT_SOURCE", "POOL_SOURCE", "TRAIN_SOURCE", "Architecture", "Budget",
           "digits_zoo", "train_digits_zoo"]
