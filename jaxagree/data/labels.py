"""Label spaces: mapping a model's output classes (e.g. the 1,000 ImageNet classes) onto a
dataset's categories.

A :class:`LabelSpace` says which model classes make up each category (``members``, a boolean
``[categories, classes]`` matrix). A model's decision within the space is taken from its logits
by one of two rules (:func:`decide`):

``max`` (default)
    the category holding the single most probable class: ``argmax_k max_{c in k} p_c``. Since the
    softmax is monotone this is ``argmax_k max_{c in k} logit_c``; it is the top-1 class of the
    model restricted to the mapped classes, then mapped (the rule of ObjectNet's evaluation).
``mean``
    the category with the highest mean probability over its classes:
    ``argmax_k mean_{c in k} p_c``, ``p = softmax(logits)`` over all classes (the rule of
    Geirhos et al.'s 16-class model-vs-human mapping). Categories with many classes are not
    favoured just for having many.

Shipped spaces (data under ``jaxagree/data/label_spaces/``, sources in its ``SOURCES.md``):

``imagenet``     the 1,000 ILSVRC-2012 classes, named by WordNet id, one class each.
``objectnet``    ObjectNet's 113 classes that overlap ImageNet, with ObjectNet's own mapping.
``16-class``     the 16 entry-level categories of model-vs-human (Geirhos et al. 2018).

A user mapping file (``.json``: ``{"category": [class, ...]}``, or a ``.csv``/``.tsv`` with
columns ``category`` and ``class``, one row per pair) names classes by index, by WordNet id or
by ImageNet class name; categories keep the order of first appearance.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

DECISIONS = ("max", "mean")
_DATA = Path(__file__).with_name("label_spaces")
_WNID = re.compile(r"^n\d{8}$")
SHIPPED = {"imagenet": None, "objectnet": "objectnet.tsv", "16-class": "model_vs_human_16.tsv"}


class LabelSpace(NamedTuple):
    """Categories made of a model's output classes.

    Attributes:
      name: the space's name (a shipped name or the mapping file).
      categories: category names, in index order.
      members: ``bool [categories, classes]``: which classes make up each category.
      aliases: other names of categories (e.g. ObjectNet's folder names) -> category index.
    """

    name: str
    categories: list[str]
    members: np.ndarray
    aliases: dict[str, int]

    @property
    def num_classes(self) -> int:
        return self.members.shape[1]

    def fingerprint(self) -> str:
        digest = hashlib.sha256(json.dumps(self.categories).encode())
        digest.update(np.packbits(self.members).tobytes())
        return digest.hexdigest()[:12]


class ImagenetClasses(NamedTuple):
    """The 1,000 ILSVRC-2012 classes in index order: WordNet ids and short names."""

    wnids: list[str]
    names: list[str]


@functools.cache
def imagenet_classes() -> ImagenetClasses:
    rows = _read_tsv(_DATA / "imagenet.tsv")
    if [int(r["index"]) for r in rows] != list(range(1000)):
        raise AssertionError("imagenet.tsv must list the indices 0..999 in order")
    return ImagenetClasses([r["wnid"] for r in rows], [r["name"] for r in rows])


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def label_space(spec: str | os.PathLike | LabelSpace, *, num_classes: int = 1000) -> LabelSpace:
    """A shipped label space by name (``imagenet``, ``objectnet``, ``16-class``) or one read
    from a mapping file (see the module docstring) for a model with ``num_classes`` outputs."""
    if isinstance(spec, LabelSpace):
        if spec.num_classes != num_classes:
            raise ValueError(f"label space {spec.name!r} maps {spec.num_classes} classes; the model has {num_classes}")
        return spec
    text = str(spec)
    if text in SHIPPED:
        if num_classes != 1000:
            raise ValueError(f"label space {text!r} maps the 1000 ImageNet classes; the model has {num_classes}")
        return _shipped(text)
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"label space {text!r}: neither a shipped space ({', '.join(SHIPPED)}) nor a mapping file")
    return _from_file(path, num_classes)


@functools.cache
def _shipped(name: str) -> LabelSpace:
    wnids = imagenet_classes().wnids
    if name == "imagenet":
        names = imagenet_classes().names
        unique = [n for n in names if names.count(n) == 1]  # 'crane' and 'maillot' name two classes each
        return LabelSpace(name, list(wnids), np.eye(1000, dtype=bool), {n: names.index(n) for n in unique})
    rows = _read_tsv(_DATA / SHIPPED[name])
    key = "objectnet_class" if name == "objectnet" else "category"
    categories = [r[key] for r in rows]
    members = np.zeros((len(rows), 1000), bool)
    for k, row in enumerate(rows):
        members[k, [int(i) for i in row["imagenet_indices"].split(",")]] = True
    aliases = {r["folder"]: k for k, r in enumerate(rows)} if name == "objectnet" else {}
    return LabelSpace(name, categories, members, aliases)


def _from_file(path: Path, num_classes: int) -> LabelSpace:
    pairs: list[tuple[str, str, str]] = []  # (category, class, where)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ValueError(f'{path}: expected a JSON object {{"category": [class, ...], ...}}')
        pairs = [(str(k), str(c), f"category {k!r}") for k, classes in data.items() for c in classes]
    else:
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file, delimiter=delimiter)
            if not reader.fieldnames or not {"category", "class"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: needs the columns 'category' and 'class' (got {reader.fieldnames})")
            pairs = [(row["category"].strip(), row["class"].strip(), f"line {n}") for n, row in enumerate(reader, 2)]
    if not pairs:
        raise ValueError(f"{path}: maps no classes")
    categories = list(dict.fromkeys(category for category, _, _ in pairs))
    members = np.zeros((len(categories), num_classes), bool)
    position = {c: k for k, c in enumerate(categories)}
    for category, name, where in pairs:
        members[position[category], _class_index(name, num_classes, f"{path} {where}")] = True
    return LabelSpace(str(path), categories, members, {})


def _class_index(name: str, num_classes: int, where: str) -> int:
    """A model class named by index, WordNet id or ImageNet name."""
    if re.fullmatch(r"\d+", name):
        if int(name) >= num_classes:
            raise ValueError(f"{where}: class {name} is out of range for a model with {num_classes} classes")
        return int(name)
    if num_classes == 1000:
        classes = imagenet_classes()
        if _WNID.match(name) and name in classes.wnids:
            return classes.wnids.index(name)
        matches = [i for i, n in enumerate(classes.names) if n.lower() == name.lower()]
        if len(matches) > 1:
            raise ValueError(f"{where}: {name!r} names ImageNet classes {matches} "
                             f"({', '.join(classes.wnids[i] for i in matches)}); name one by its WordNet id")
        if matches:
            return matches[0]
        raise ValueError(f"{where}: unknown class {name!r} (not an index, an ImageNet WordNet id or class name)")
    raise ValueError(f"{where}: unknown class {name!r}; for a model with {num_classes} classes name classes by index")


def decide(
    logits: Float[Array, "batch classes"], members: Bool[Array, "categories classes"], *, decision: str = "max",
) -> Int[Array, " batch"]:
    """Each stimulus' category within a label space, from the model's logits (see the module
    docstring for ``max`` and ``mean``). Jittable; ``decision`` is static."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if logits.shape[-1] != members.shape[-1]:
        raise ValueError(f"logits have {logits.shape[-1]} classes, the label space maps {members.shape[-1]}")
    logits = logits.astype(jnp.float32)
    if decision == "max":
        # The best category holds the most probable mapped class: find that class, then its
        # (first) category, without a [batch, categories, classes] table.
        best = jnp.argmax(jnp.where(jnp.any(members, axis=0), logits, -jnp.inf), axis=-1)
        return jnp.argmax(members[:, best], axis=0).astype(jnp.int32)
    probabilities = jax.nn.softmax(logits, axis=-1)
    scores = (probabilities @ members.T.astype(jnp.float32)) / jnp.sum(members, axis=-1)
    return jnp.argmax(scores, axis=-1).astype(jnp.int32)


def map_labels(space: LabelSpace, labels: np.ndarray | None, categories: Sequence[str] | None) -> np.ndarray | None:
    """A dataset's labels in ``space``'s categories (-1 where a label has no category there).

    A dataset category is found by name: a category of the space or one of its aliases, else a
    model class (a WordNet id or ImageNet name, or an index string) that belongs to exactly one
    category. A dataset without category names has labels that index the model's classes."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    owner = np.full(space.num_classes, -1, np.int64)
    single = space.members.sum(axis=0) == 1
    owner[single] = np.argmax(space.members[:, single], axis=0)
    if categories is None:
        valid = (labels >= 0) & (labels < space.num_classes)
        return np.where(valid, owner[np.clip(labels, 0, space.num_classes - 1)], -1).astype(np.int32)
    position = {name: k for k, name in enumerate(space.categories)} | space.aliases
    table = np.array([_category_of(str(name), position, owner, space.num_classes) for name in categories] + [-1])
    return table[np.where(labels >= 0, labels, len(categories))].astype(np.int32)


def _category_of(name: str, position: dict[str, int], owner: np.ndarray, num_classes: int) -> int:
    if name in position:
        return position[name]
    try:
        return int(owner[_class_index(name, num_classes, "")])
    except ValueError:  # not a class of the model either (or an ambiguous name)
        return -1


__all__ = ["DECISIONS", "SHIPPED", "ImagenetClasses", "LabelSpace", "decide", "imagenet_classes", "label_space",
           "map_labels"]
