"""Malformed input to every command, table-driven: each case must exit with status 2 and one line
that names the culprit, write no output folder, and stay within a memory limit.

All cases run in one worker process (jax imported once) whose address space is capped
(``RLIMIT_AS``): a reader that sized anything by a hostile value (a 4 TB header, a category index
of 2**40) would fail with MemoryError there instead of passing on a machine with room to spare.
"""

import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.zoo_helpers import native_entry, zoo_toml

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 3 * 2**30  # the worker imports jax, matplotlib and flax in about 0.3 GB
NON_UTF8 = b"\xff\xfe\xc3\x28 caf\xe9"


# ---------------------------------------------------------------------------------------------
# Files: a valid one of each format, then damaged copies


def _text(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _truncated(path: Path, source: Path, share: float = 0.5) -> Path:
    data = source.read_bytes()
    return _text(path, data[: int(len(data) * share)])


def _npy_header_only(path: Path, shape, dtype="<i8") -> Path:
    """A valid .npy header that declares ``shape`` and is followed by 16 bytes of data."""
    with path.open("wb") as stream:
        np.lib.format.write_array_header_1_0(stream, {"descr": dtype, "fortran_order": False, "shape": shape})
        stream.write(bytes(16))
    return path


def _npz_with_member(path: Path, name: str, member: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(member, f"{name}.npy")
    return path


def _parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


PREDS = np.array([[0, 1, 2, 1], [0, 1, 1, 1], [2, 1, 0, 1]])
CSV_TEXT = "model,stimulus,response,label\n" + "".join(
    f"m{m},s{s},{'abc'[PREDS[m, s]]},{'abc'[PREDS[0, s]]}\n" for m in range(3) for s in range(4))
ZOO = zoo_toml(native_entry("conv", "convnet", num_classes=3))


def build_files(d: Path) -> None:
    rng = np.random.default_rng(0)
    good_csv = _text(d / "good.csv", CSV_TEXT)
    np.savez(d / "good.npz", predictions=PREDS)
    np.save(d / "good.npy", PREDS)
    _parquet(d / "good.parquet", model=["m0", "m1", "m0", "m1"], stimulus=["a", "a", "b", "b"], response=[0, 1, 1, 1])
    features = {f"net{i}": rng.normal(size=(20, 5)).astype(np.float32) for i in range(3)}
    np.savez(d / "features.npz", **features)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    np.savez(d / "images.npz", images=images)
    _text(d / "zoo.toml", ZOO)
    _text(d / "categories.txt", "a\nb\nc\n")
    _text(d / "indices.txt", "0\n1\n2\n")
    _text(d / "families.csv", "model,family\nnet0,conv\nnet1,conv\nnet2,attention\n")

    # Long tables.
    _text(d / "empty.csv", "")
    _text(d / "header.csv", "model,stimulus,response,label\n")
    _truncated(d / "truncated.csv", good_csv, 0.45)  # the last row is cut mid-way: a ragged row
    _text(d / "dtype.csv", "model,stimulus,response\nm0,s0,1\nm1,s0,2.5\nm0,s1,0\n")
    _text(d / "huge.csv", "model,stimulus,response\nm0,s0,1\nbig_net,s0,1099511627776\nm0,s1,0\n")
    _text(d / "huge_label.csv", "model,stimulus,response,label\nm0,s0,1,1\nm1,s0,2,99999999999\n")
    _text(d / "nonutf8.csv", b"model,stimulus,response\nm0,s0," + NON_UTF8 + b"\nm1,s0,a\n")
    _text(d / "columns.csv", "net,image,answer\nm0,s0,a\nm1,s0,b\n")
    _text(d / "mixed.csv", "model,stimulus,response,label\nm0,s0,cat,0\nm1,s0,dog,1\n")
    _text(d / "negative.csv", "model,stimulus,response\nm0,s0,cat\nbad_net,s0,-5\n")
    _text(d / "columns.tsv", "model\tstimulus\nm0\ts0\n")
    # Parquet.
    _text(d / "empty.parquet", "")
    _parquet(d / "header.parquet", model=pa.array([], pa.string()), stimulus=pa.array([], pa.string()),
             response=pa.array([], pa.int64()))
    _truncated(d / "truncated.parquet", d / "good.parquet")
    _parquet(d / "dtype.parquet", model=["m0", "m1"], stimulus=["a", "a"], response=[0.5, 1.0])
    _parquet(d / "huge.parquet", model=["m0", "big_net"], stimulus=["a", "a"], response=[1, 2**40])
    _parquet(d / "nonutf8.parquet", model=["m0", "m1"], stimulus=["a", "a"],
             response=pa.array([b"ok", NON_UTF8], pa.binary()))
    _parquet(d / "columns.parquet", model=["m0"], stimulus=["a"])
    # Wide arrays.
    _text(d / "empty.npy", "")
    _npy_header_only(d / "header.npy", (3, 4))
    _truncated(d / "truncated.npy", d / "good.npy", 0.8)
    np.save(d / "dtype.npy", PREDS.astype(np.float64))
    _npy_header_only(d / "shape.npy", (10**6, 10**6))
    np.save(d / "huge.npy", np.array([[0, 2**40], [1, 0]]))
    _text(d / "nonutf8.npy", NON_UTF8)
    _text(d / "text.npy", CSV_TEXT)
    np.save(d / "columns.npy", PREDS[0])
    _text(d / "empty.npz", "")
    with zipfile.ZipFile(d / "header.npz", "w"):
        pass  # an archive with no arrays
    _truncated(d / "truncated.npz", d / "good.npz")
    np.savez(d / "dtype.npz", predictions=np.array([["a", "b"], ["b", "b"]]))
    _npz_with_member(d / "shape.npz", "predictions", _npy_header_only(d / "shape_member.npy", (10**6, 10**6)))
    np.savez(d / "huge.npz", predictions=np.array([[0, 1], [1, 0]]), labels=np.array([0, 2**40]))
    _text(d / "nonutf8.npz", NON_UTF8)
    np.savez(d / "columns.npz", preds=PREDS)
    np.savez(d / "models.npz", predictions=PREDS, models=np.array(["a", "b"]))
    # Other inputs of agreement.
    _text(d / "nonutf8_categories.txt", b"a\n" + NON_UTF8 + b"\n")
    _text(d / "empty_categories.txt", "\n\n")
    _text(d / "repeated_categories.txt", "a\nb\na\n")

    # Features (cka).
    _truncated(d / "truncated_features.npz", d / "features.npz")
    np.savez(d / "dtype_features.npz", net0=features["net0"], net1=np.full((20, 5), "x"))
    _npz_with_member(d / "shape_features.npz", "net0", _npy_header_only(d / "shape_f.npy", (10**7, 10**5), "<f4"))
    np.savez(d / "huge_features.npz", net0=features["net0"], net1=np.full((20, 5), np.inf, np.float32))
    np.savez(d / "columns_features.npz", net0=features["net0"], net1=np.zeros(20, np.float32))
    np.savez(d / "stimuli_features.npz", net0=features["net0"], net1=features["net1"][:15])
    (d / "feature_folder").mkdir()
    np.save(d / "feature_folder" / "net0.npy", features["net0"])
    _text(d / "feature_folder" / "net1.npy", "0.1,0.2\n")
    (d / "empty_folder").mkdir()
    _text(d / "nonutf8_indices.txt", b"0\n" + NON_UTF8 + b"\n")
    _text(d / "huge_indices.txt", "0\n1099511627776\n")
    _text(d / "dtype_indices.txt", "0\n1.5\n")
    _text(d / "nonutf8_families.csv", b"model,family\nnet0," + NON_UTF8 + b"\n")
    _text(d / "columns_families.csv", "net,kind\nnet0,conv\n")
    _text(d / "header_families.csv", "model,family\n")

    # Zoo files and image sources (extract, convert).
    _text(d / "empty.toml", "")
    _text(d / "truncated.toml", ZOO[: len(ZOO) // 2])
    _text(d / "nonutf8.toml", b'[[model]]\nname = "' + NON_UTF8 + b'"\n')
    _text(d / "columns.toml", '[[model]]\nname = "conv"\nfamily = "conv"\n')
    _text(d / "dtype.toml", ZOO.replace("num_classes = 3", 'num_classes = "ten"'))
    _text(d / "huge.toml", ZOO.replace("num_classes = 3", "num_classes = 1000000000000"))
    _text(d / "negative.toml", ZOO.replace("num_classes = 3", "num_classes = -3"))
    _text(d / "long_name.toml", ZOO.replace('name = "conv"', f'name = "{"n" * 300}"'))
    _text(d / "code.toml", '[[model]]\nname = "conv"\nsource = "python:os:system"\nfamily = "conv"\n'
          'command = "touch pwned"\n')
    _truncated(d / "truncated_images.npz", d / "images.npz")
    np.savez(d / "dtype_images.npz", images=np.zeros((4, 8, 8, 3), np.float32))
    _npz_with_member(d / "shape_images.npz", "images", _npy_header_only(d / "shape_i.npy", (10**6, 224, 224, 3), "|u1"))
    np.savez(d / "huge_images.npz", images=images, labels=np.array([0, 1, 2**40, 0]))
    np.savez(d / "columns_images.npz", pictures=images)
    _text(d / "empty_images.npz", "")
    (d / "bad_images").mkdir()
    _text(d / "bad_images" / "broken.png", NON_UTF8)
    _text(d / "empty.tar", "")
    _text(d / "text.tar", CSV_TEXT * 40)
    _text(d / "truncated.tar", b"ILSVRC2012_val_00000001.JPEG" + bytes(100))


# ---------------------------------------------------------------------------------------------
# The table: (case id, command arguments with {d} for the folder, substrings the error must hold)

A, F, ID = ["agreement"], ["cka"], ["identify"]


def _agreement(name, *extra):
    return [*A, f"{{d}}/{name}", *extra]


CASES = [
    # agreement: long CSV/TSV
    ("agreement-csv-empty", _agreement("empty.csv"), ["empty.csv"]),
    ("agreement-csv-header-only", _agreement("header.csv"), ["header.csv", "no rows"]),
    ("agreement-csv-truncated", _agreement("truncated.csv"), ["truncated.csv"]),
    ("agreement-csv-wrong-dtype", _agreement("dtype.csv"), ["dtype.csv", "'2.5'", "mixed"]),
    ("agreement-csv-huge-value", _agreement("huge.csv"), ["huge.csv", "big_net", "1,099,511,627,776", "too large"]),
    ("agreement-csv-huge-label", _agreement("huge_label.csv"), ["huge_label.csv", "99,999,999,999", "too large"]),
    ("agreement-csv-non-utf8", _agreement("nonutf8.csv"), ["nonutf8.csv", "UTF8"]),
    ("agreement-csv-wrong-columns", _agreement("columns.csv"), ["columns.csv", "'model'", "found: net"]),
    ("agreement-csv-names-and-integers", _agreement("mixed.csv"), ["mixed.csv", "row 0", "mixed"]),
    ("agreement-csv-negative", _agreement("negative.csv"), ["negative.csv", "bad_net", "-5"]),
    ("agreement-tsv-wrong-columns", _agreement("columns.tsv"), ["columns.tsv", "'response'"]),
    ("agreement-csv-huge-num-categories", _agreement("good.csv", "--num-categories", "5000000000"),
     ["num_categories=5,000,000,000"]),
    # agreement: Parquet
    ("agreement-parquet-empty", _agreement("empty.parquet"), ["empty.parquet", "Parquet"]),
    ("agreement-parquet-header-only", _agreement("header.parquet"), ["header.parquet", "no rows"]),
    ("agreement-parquet-truncated", _agreement("truncated.parquet"), ["truncated.parquet", "Parquet"]),
    ("agreement-parquet-wrong-dtype", _agreement("dtype.parquet"), ["dtype.parquet", "0.5", "not a category index"]),
    ("agreement-parquet-huge-value", _agreement("huge.parquet"), ["huge.parquet", "big_net", "too large"]),
    ("agreement-parquet-non-utf8", _agreement("nonutf8.parquet"), ["nonutf8.parquet", "UTF8"]),
    ("agreement-parquet-wrong-columns", _agreement("columns.parquet"), ["columns.parquet", "'response'"]),
    # agreement: .npy
    ("agreement-npy-empty", _agreement("empty.npy"), ["empty.npy", "not a valid .npy"]),
    ("agreement-npy-header-only", _agreement("header.npy"), ["header.npy", "truncated"]),
    ("agreement-npy-truncated", _agreement("truncated.npy"), ["truncated.npy", "truncated"]),
    ("agreement-npy-wrong-dtype", _agreement("dtype.npy"), ["dtype.npy", "float64"]),
    ("agreement-npy-huge-shape", _agreement("shape.npy"), ["shape.npy", "[1000000, 1000000]", "8.0 TB"]),
    ("agreement-npy-huge-value", _agreement("huge.npy"), ["huge.npy", "1,099,511,627,776", "too large"]),
    ("agreement-npy-non-utf8", _agreement("nonutf8.npy"), ["nonutf8.npy", "not a valid .npy"]),
    ("agreement-npy-text", _agreement("text.npy"), ["text.npy", "not a valid .npy"]),
    ("agreement-npy-wrong-rank", _agreement("columns.npy"), ["columns.npy", "[models, stimuli]"]),
    # agreement: .npz
    ("agreement-npz-empty", _agreement("empty.npz"), ["empty.npz", "not a valid .npz"]),
    ("agreement-npz-no-arrays", _agreement("header.npz"), ["header.npz", "no 'predictions' array"]),
    ("agreement-npz-truncated", _agreement("truncated.npz"), ["truncated.npz", "truncated"]),
    ("agreement-npz-wrong-dtype", _agreement("dtype.npz"), ["dtype.npz", "integer"]),
    ("agreement-npz-huge-shape", _agreement("shape.npz"), ["shape.npz", "'predictions'", "8.0 TB"]),
    ("agreement-npz-huge-label", _agreement("huge.npz"), ["huge.npz", "labels", "too large"]),
    ("agreement-npz-non-utf8", _agreement("nonutf8.npz"), ["nonutf8.npz", "not a valid .npz"]),
    ("agreement-npz-wrong-columns", _agreement("columns.npz"), ["columns.npz", "no 'predictions'", "preds"]),
    ("agreement-npz-wrong-names", _agreement("models.npz"), ["models.npz", "models has 2 names"]),
    # agreement: category lists
    ("agreement-categories-non-utf8", _agreement("good.csv", "--categories", "{d}/nonutf8_categories.txt"),
     ["nonutf8_categories.txt", "UTF-8"]),
    ("agreement-categories-empty", _agreement("good.csv", "--categories", "{d}/empty_categories.txt"),
     ["empty_categories.txt", "no category names"]),
    ("agreement-categories-repeated", _agreement("good.csv", "--categories", "{d}/repeated_categories.txt"),
     ["repeated_categories.txt", "'a' is listed twice"]),
    ("agreement-categories-absent", _agreement("good.csv", "--categories", "{d}/absent.txt"),
     ["absent.txt", "no such file"]),
    ("agreement-out-is-a-file", [*A, "{d}/good.csv", "--out", "{d}/good.npy"], ["good.npy", "is a file"]),
    ("agreement-out-under-a-file", [*A, "{d}/good.csv", "--out", "{d}/good.npy/out"], ["good.npy", "which is a file"]),
    # cka
    ("cka-npz-empty", [*F, "{d}/empty.npz"], ["empty.npz", "not a valid .npz"]),
    ("cka-npz-no-arrays", [*F, "{d}/header.npz"], ["header.npz", "no arrays"]),
    ("cka-npz-truncated", [*F, "{d}/truncated_features.npz"], ["truncated_features.npz", "truncated"]),
    ("cka-npz-wrong-dtype", [*F, "{d}/dtype_features.npz"], ["dtype_features.npz", "'net1'", "not real numbers"]),
    ("cka-npz-huge-shape", [*F, "{d}/shape_features.npz"], ["shape_features.npz", "'net0'", "4.0 TB"]),
    ("cka-npz-huge-values", [*F, "{d}/huge_features.npz"], ["net1", "inf"]),
    ("cka-npz-non-utf8", [*F, "{d}/nonutf8.npz"], ["nonutf8.npz", "not a valid .npz"]),
    ("cka-npz-wrong-rank", [*F, "{d}/columns_features.npz"], ["columns_features.npz", "'net1'", "[stimuli, dim]"]),
    ("cka-npz-mismatched-stimuli", [*F, "{d}/stimuli_features.npz"], ["net1", "15"]),
    ("cka-folder-text-npy", [*F, "{d}/feature_folder"], ["net1.npy", "not a valid .npy"]),
    ("cka-folder-empty", [*F, "{d}/empty_folder"], ["empty_folder", "no .npy files"]),
    ("cka-indices-non-utf8", [*F, "{d}/features.npz", "--stimuli", "{d}/nonutf8_indices.txt"],
     ["nonutf8_indices.txt", "UTF-8"]),
    ("cka-indices-huge", [*F, "{d}/features.npz", "--stimuli", "{d}/huge_indices.txt"],
     ["huge_indices.txt", "1099511627776", "outside"]),
    ("cka-indices-wrong-dtype", [*F, "{d}/features.npz", "--stimuli", "{d}/dtype_indices.txt"],
     ["dtype_indices.txt", "'1.5'"]),
    ("cka-families-non-utf8", [*F, "{d}/features.npz", "--families", "{d}/nonutf8_families.csv"],
     ["nonutf8_families.csv", "UTF-8"]),
    ("cka-families-wrong-columns", [*F, "{d}/features.npz", "--families", "{d}/columns_families.csv"],
     ["columns_families.csv", "'family'"]),
    ("cka-families-header-only", [*F, "{d}/features.npz", "--families", "{d}/header_families.csv"],
     ["header_families.csv", "net0"]),
    ("cka-out-is-a-file", [*F, "{d}/features.npz", "--out", "{d}/good.npy"], ["good.npy", "is a file"]),
    # identify: features, families and stimulus sets (the readers cka uses, and its own checks)
    ("identify-npz-huge-values", [*ID, "{d}/huge_features.npz", "--families", "{d}/families.csv"], ["net1", "inf"]),
    ("identify-npz-mismatched-stimuli", [*ID, "{d}/stimuli_features.npz", "--families", "{d}/families.csv"],
     ["net1", "15"]),
    ("identify-families-header-only", [*ID, "{d}/features.npz", "--families", "{d}/header_families.csv"],
     ["header_families.csv", "net0"]),
    ("identify-families-non-utf8", [*ID, "{d}/features.npz", "--families", "{d}/nonutf8_families.csv"],
     ["nonutf8_families.csv", "UTF-8"]),
    ("identify-indices-huge", [*ID, "{d}/features.npz", "--families", "{d}/families.csv", "--stimuli",
                               "contrastive={d}/huge_indices.txt"], ["huge_indices.txt", "outside"]),
    ("identify-zoo-truncated", [*ID, "{d}/features.npz", "--families", "{d}/truncated.toml"], ["truncated.toml"]),
    # extract: zoo files
    ("extract-zoo-empty", ["extract", "--zoo", "{d}/empty.toml", "--stimuli", "npz:{d}/images.npz"],
     ["empty.toml", "no [[model]]"]),
    ("extract-zoo-truncated", ["extract", "--zoo", "{d}/truncated.toml", "--stimuli", "npz:{d}/images.npz"],
     ["truncated.toml", "TOML"]),
    ("extract-zoo-non-utf8", ["extract", "--zoo", "{d}/nonutf8.toml", "--stimuli", "npz:{d}/images.npz"],
     ["nonutf8.toml"]),
    ("extract-zoo-wrong-columns", ["extract", "--zoo", "{d}/columns.toml", "--stimuli", "npz:{d}/images.npz"],
     ["columns.toml", "'source'"]),
    ("extract-zoo-wrong-dtype", ["extract", "--zoo", "{d}/dtype.toml", "--stimuli", "npz:{d}/images.npz"],
     ["dtype.toml", "'conv'", "num_classes"]),
    ("extract-zoo-huge-value", ["extract", "--zoo", "{d}/huge.toml", "--stimuli", "npz:{d}/images.npz"],
     ["huge.toml", "'conv'", "num_classes"]),
    ("extract-zoo-negative", ["extract", "--zoo", "{d}/negative.toml", "--stimuli", "npz:{d}/images.npz"],
     ["negative.toml", "'conv'", "num_classes"]),
    ("extract-zoo-long-name", ["extract", "--zoo", "{d}/long_name.toml", "--stimuli", "npz:{d}/images.npz"],
     ["long_name.toml", "nnnnnnnn"]),
    ("extract-zoo-code-without-trust", ["extract", "--zoo", "{d}/code.toml", "--stimuli", "npz:{d}/images.npz"],
     ["code.toml", "'conv'", "--trust-code"]),
    # extract and convert: image sources
    ("extract-images-truncated", ["extract", "--zoo", "{d}/zoo.toml", "--stimuli", "npz:{d}/truncated_images.npz"],
     ["truncated_images.npz", "truncated"]),
    ("extract-images-empty", ["extract", "--zoo", "{d}/zoo.toml", "--stimuli", "npz:{d}/empty_images.npz"],
     ["empty_images.npz", "not a valid .npz"]),
    ("extract-images-wrong-dtype", ["extract", "--zoo", "{d}/zoo.toml", "--stimuli", "npz:{d}/dtype_images.npz"],
     ["dtype_images.npz", "uint8"]),
    ("extract-images-huge-shape", ["extract", "--zoo", "{d}/zoo.toml", "--stimuli", "npz:{d}/shape_images.npz"],
     ["shape_images.npz", "'images'", "150.5 GB"]),
    ("extract-images-huge-label", ["extract", "--zoo", "{d}/zoo.toml", "--stimuli", "npz:{d}/huge_images.npz"],
     ["huge_images.npz", "1099511627776"]),
    ("extract-images-wrong-columns", ["extract", "--zoo", "{d}/zoo.toml", "--stimuli", "npz:{d}/columns_images.npz"],
     ["columns_images.npz", "no 'images' array", "pictures"]),
    ("extract-images-bad-folder", ["extract", "--zoo", "{d}/zoo.toml", "--stimuli", "folder:{d}/bad_images"],
     ["broken.png"]),
    ("extract-out-under-a-file", ["extract", "--zoo", "{d}/zoo.toml", "--stimuli", "npz:{d}/images.npz", "--out",
                                  "{d}/good.npy/run"], ["good.npy", "which is a file"]),
    ("convert-images-truncated", ["convert", "npz:{d}/truncated_images.npz", "--name", "x", "--data-dir", "{d}/tfds"],
     ["truncated_images.npz", "truncated"]),
    ("convert-images-bad-folder", ["convert", "folder:{d}/bad_images", "--name", "x", "--data-dir", "{d}/tfds"],
     ["broken.png"]),
    # prepare-imagenet: archives
    ("prepare-imagenet-empty", ["prepare-imagenet", "{d}/empty.tar", "--data-dir", "{d}/tfds"], ["empty.tar"]),
    ("prepare-imagenet-not-a-tar", ["prepare-imagenet", "{d}/text.tar", "--data-dir", "{d}/tfds"], ["text.tar"]),
    ("prepare-imagenet-truncated", ["prepare-imagenet", "{d}/truncated.tar", "--data-dir", "{d}/tfds"],
     ["truncated.tar"]),
]


def _argv(case_id: str, argv: list[str], folder: Path) -> list[str]:
    argv = [a.replace("{d}", str(folder)) for a in argv]
    if argv[0] in ("agreement", "cka", "identify", "extract") and "--out" not in argv:
        argv += ["--out", str(folder / "out" / case_id)]
    if argv[0] in ("extract", "convert", "prepare-imagenet"):
        argv.append("--no-progress")
    return argv


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_input")
    build_files(folder)
    cases = [{"id": case_id, "argv": _argv(case_id, argv, folder)} for case_id, argv, _ in CASES]
    (folder / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run(
        [sys.executable, "-m", "tests.bad_input_worker", str(folder / "cases.json"), str(folder / "results.json"),
         str(MEMORY_LIMIT)],
        cwd=folder, env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return folder, json.loads((folder / "results.json").read_text())


@pytest.mark.parametrize("case_id, argv, culprits", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_exit_2(outcomes, case_id, argv, culprits):
    folder, results = outcomes
    result = results[case_id]
    assert result["bug"] is None, f"a traceback instead of a message:\n{result['bug']}"
    command = argv[0]
    lines = [line for line in result["stderr"].splitlines() if line.startswith(f"jaxagree {command}: error: ")]
    assert result["code"] == 2, f"exit status {result['code']}; stderr:\n{result['stderr'][-3000:]}"
    assert len(lines) == 1, f"expected one error line; stderr:\n{result['stderr'][-3000:]}"
    assert "Traceback" not in result["stderr"]
    for culprit in culprits:
        assert culprit in lines[0], f"{culprit!r} not in {lines[0]!r}"
    assert not (folder / "out" / case_id).exists(), "a failed run left an output folder"
    assert result["stdout"] == ""


def test_no_case_ran_code_or_wrote_elsewhere(outcomes):
    folder, _ = outcomes
    assert not (folder / "pwned").exists()  # the zoo file's python:os:system entry never ran
    assert not (folder / "tfds").exists() or not any((folder / "tfds").rglob("*.array_record*"))


def test_memory_stayed_bounded(outcomes):
    _, results = outcomes
    peak = max(r["peak_rss"] for r in results.values())
    assert peak < MEMORY_LIMIT, f"peak resident memory {peak / 2**30:.2f} GB"


def test_every_command_with_inputs_has_cases():
    commands = {argv[0] for _, argv, _ in CASES}
    assert commands == {"agreement", "cka", "identify", "extract", "convert", "prepare-imagenet"}


def test_the_file_builders_make_what_they_claim(tmp_path):
    """Guards the table: the damaged files really are damaged in the way their case says."""
    build_files(tmp_path)
    with (tmp_path / "shape.npy").open("rb") as stream:
        np.lib.format.read_magic(stream)
        assert np.lib.format.read_array_header_1_0(stream)[0] == (10**6, 10**6)
    assert (tmp_path / "shape.npy").stat().st_size < 200
    assert np.load(tmp_path / "huge.npy").max() == 2**40
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(tmp_path / "truncated.npz")
    assert struct.unpack("<I", (tmp_path / "good.parquet").read_bytes()[-8:-4])[0] > 0  # a real footer length
    assert (tmp_path / "truncated.parquet").read_bytes()[-4:] != b"PAR1"
    with pytest.raises(UnicodeDecodeError):
        NON_UTF8.decode("utf-8")
