"""Category coding shared by the table readers (long tables, model-vs-human folders, per-image
tables): one rule for turning response and label text into category indices, so every format
reads ``na``, ``-1``, ``" cat "`` and ``3`` the same way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxagree._checks import MAX_CATEGORIES, out_of_range, outside_categories, require_num_categories

MISSING_MARKERS = frozenset({"", "na", "nan", "none"})
# Up to 18 digits fit int64; longer digit strings are read as category names.
INTEGER = re.compile(r"^[+-]?\d{1,18}$")

NAME_INDEX = np.iinfo(np.int64).min  # in Column.indices: the value is a category name, not an index


class Column(NamedTuple):
    """A response or label column as codes into its distinct values.

    Text work (trimming, missing markers, integer parsing, vocabulary look-up) is done once per
    distinct value, never per row: a table of tens of millions of rows has few distinct values.
    """

    name: str  # "response" or "label"
    codes: np.ndarray  # int64 [rows], index into the distinct values
    indices: np.ndarray  # int64 [distinct]: the integer index; -1 missing; NAME_INDEX for a name
    names: list[str | None]  # [distinct]: the trimmed name where the value is a name


def classify_words(words) -> tuple[list[int], list[str | None]]:
    """Per distinct word (None for a null): its integer index (-1 missing, NAME_INDEX for a name)
    and its trimmed name where it is a name. ``"-1"`` is "no response" in text as in integers."""
    indices, names = [], []
    for word in words:
        word = None if word is None else word.strip()
        if word is None or word.lower() in MISSING_MARKERS:
            indices.append(-1)
            names.append(None)
        elif INTEGER.match(word):
            indices.append(int(word))
            names.append(None)
        else:
            indices.append(NAME_INDEX)
            names.append(word)
    return indices, names


def too_large(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what} is too large for a category index (jaxagree accepts up to "
                      f"{MAX_CATEGORIES - 1:,}); number the categories from 0, or give their names with "
                      "categories= (--categories FILE)")


def given_categories(categories, num_categories) -> tuple[list[str] | None, int | None]:
    """The given category names (unique) and count, checked against each other and the bound."""
    if categories is not None:
        categories = [str(c) for c in categories]
        if len(set(categories)) != len(categories):
            raise ValueError("categories contains duplicate names")
        if num_categories is not None and num_categories != len(categories):
            raise ValueError(f"num_categories={num_categories} disagrees with the {len(categories)} given categories")
        return categories, len(categories)
    return None, None if num_categories is None else require_num_categories(num_categories)


def first_row(column: Column, distinct: np.ndarray) -> int:
    """The first row of ``column`` whose value is one of the ``distinct`` positions."""
    return int(np.flatnonzero(np.isin(column.codes, distinct))[0])


def categorise(columns: list[Column], categories, num_categories, path, where) -> tuple[list[str], list]:
    """Category names and, per column, int32 category indices per row (-1 = missing).

    The rule, for responses and labels alike: an integer is an index; with ``categories`` it
    indexes that list and a name is looked up in it. Without ``categories`` the values must be all
    integers (indices ``0 .. max``, or ``num_categories``) or all names (the vocabulary is their
    sorted union): a mix is an error, since ``0`` and ``cat`` cannot be put in one order.
    """
    for column in columns:
        negative = np.flatnonzero(outside_categories(column.indices, None) & (column.indices != NAME_INDEX))
        if negative.size:
            row = first_row(column, negative[:1])
            raise out_of_range(f"{path}: {column.name} {column.indices[negative[0]]} at {where(row)}", None)
    categories, num_categories = given_categories(categories, num_categories)
    with_names = [c for c in columns if any(n is not None for n in c.names)]
    with_integers = [c for c in columns if (c.indices >= 0).any()]
    if categories is not None:
        vocabulary = categories
    elif with_names and with_integers:
        named, numbered = with_names[0], with_integers[0]
        name_row = first_row(named, np.flatnonzero(named.indices == NAME_INDEX)[:1])
        number_row = first_row(numbered, np.flatnonzero(numbered.indices >= 0)[:1])
        raise ValueError(
            f"{path}: category names and integer indices are mixed: {named.name} "
            f"{named.names[named.codes[name_row]]!r} at {where(name_row)} is a name, {numbered.name} "
            f"{numbered.indices[numbered.codes[number_row]]} at {where(number_row)} an index. Give the category "
            "names in index order with categories= (--categories FILE), so that integers index them, or write "
            "every response and label the same way"
        )
    elif with_names:
        if num_categories is not None:
            raise ValueError(
                f"{path}: num_categories is for integer responses; responses here are category names, "
                "so give the full list of names with categories= (--categories FILE)"
            )
        vocabulary = sorted({n for c in columns for n in c.names if n is not None})
        num_categories = len(vocabulary)
    else:
        if not with_integers and num_categories is None:
            raise ValueError(f"{path}: no model gave any response")
        if num_categories is None:
            column = max(columns, key=lambda c: c.indices.max())
            largest = int(column.indices.max())
            if largest >= MAX_CATEGORIES:
                row = first_row(column, np.flatnonzero(column.indices == largest))
                raise too_large(path, f"{column.name} {largest:,} at {where(row)}")
            num_categories = largest + 1
        vocabulary = None  # integers name themselves
    index = {} if vocabulary is None else {name: i for i, name in enumerate(vocabulary)}
    codes = []
    for column in columns:
        # Per distinct value: its category, -1 if missing, -2 for an unknown name or an index out of range.
        outside = outside_categories(column.indices, num_categories) & (column.indices != NAME_INDEX)
        lookup = np.where(outside | (column.indices == NAME_INDEX), -2, column.indices)
        if index:
            lookup = np.where(column.indices == NAME_INDEX, [index.get(n, -2) for n in column.names], lookup)
        unknown = np.flatnonzero(lookup == -2)
        if unknown.size:
            row = first_row(column, unknown)
            value = column.codes[row]
            if column.indices[value] == NAME_INDEX:
                raise ValueError(f"{path}: {column.name} {column.names[value]!r} at {where(row)} is not one of the "
                                 f"{num_categories} given categories")
            raise out_of_range(f"{path}: {column.name} {column.indices[value]} at {where(row)}", num_categories)
        codes.append(lookup.astype(np.int32)[column.codes])
    names = vocabulary if vocabulary is not None else [str(i) for i in range(num_categories)]
    return names, codes
