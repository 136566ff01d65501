"""The command line's parser: every command, option and help text (``jaxagree --help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _named_file(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name.strip(), Path(path)


SOURCES_HELP = (
    "SOURCE: npz:PATH (or a .npz/.npy path) holding images uint8 [stimuli, height, width, 3], optionally "
    "labels int [stimuli], ids [stimuli] and categories; folder:PATH, a folder of images (flat, or one "
    "sub-folder per class); tfds:NAME[/CONFIG][:VERSION]:SPLIT, a prepared tensorflow-datasets dataset "
    "(e.g. tfds:imagenet2012:validation, tfds:cifar10:test[:1000]); or synthetic:NAME?params, a generated "
    "probe: squares?n=1000&size=224&square=16&count=2&min_sep=30&max_sep=150&contrast=0.5&background=0.5&seed=0, "
    "local_global?n=1000&size=224&grid=7&congruent=0&seed=0, or "
    "cue_conflict?shapes=SOURCE&textures=SOURCE&n=1000&size=224&cutoff=8&seed=0."
)


def _image_size(text: str) -> int | str | None:
    if text in ("native", "auto"):
        return None if text == "native" else text
    return _positive_int(text)


def _add_source_options(parser, data_dir_help: str = "the tensorflow-datasets data_dir for tfds: sources "
                        "(default: $TFDS_DATA_DIR or ~/tensorflow_datasets)") -> None:
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help=data_dir_help)
    parser.add_argument(
        "--image-size", type=_image_size, default="auto", metavar="N|native",
        help="bring decoded images to N x N (shorter side resized, centre crop; default 256 for folders and "
        "TFDS sets of mixed sizes, native otherwise); 'native' keeps them as they are",
    )
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out (and list) folder images that cannot be read instead of stopping")


def open_stimuli_of(args):
    from jaxagree.data import open_stimuli

    stimuli = open_stimuli(args.stimuli, data_dir=args.data_dir, image_size=args.image_size, skip_bad=args.skip_bad)
    for path, why in getattr(stimuli, "skipped", []):
        print(f"skipped {path}: {why}", file=sys.stderr)
    return stimuli


def _edges(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_analysis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=_positive_int, help="contrastive stimuli to select (default: 2%%, at most 1000)")
    bins = parser.add_mutually_exclusive_group()
    bins.add_argument("--bins", type=_positive_int, help="equal-count accuracy bins (needs labels; default up to 10)")
    bins.add_argument("--bin-edges", type=_edges, help="accuracy bin edges, e.g. 0.5,0.6,0.7,0.8 (needs labels)")
    parser.add_argument(
        "--bootstrap", type=_positive_int, metavar="N",
        help="add percentile intervals from N bootstrap replicates over stimuli (e.g. 1000) for Fleiss' kappa "
             "over all and contrastive stimuli (contrastive chosen again per replicate), per accuracy bin, and "
             "with labels for error consistency (error_consistency_intervals.csv)")
    parser.add_argument("--confidence", type=float, default=0.95, help="coverage of the intervals (default 0.95)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxagree", description="Find the stimuli on which many vision models disagree.",
        epilog="Exit status: 0 done, 2 bad input or arguments (nothing written), 1 a failure during the run, "
        "130 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True)

    agreement = commands.add_parser(
        "agreement", parents=[common],
        help="agreement, Fleiss' kappa and contrastive stimuli of a prediction table",
        description="PREDICTIONS: a long CSV/Parquet table (model, stimulus, response[, label]), "
        "a .npy/.npz array [models, stimuli] (-1 = no response), or a folder of .csv files of one of two kinds, "
        "told apart by the header of the folder's first .csv file in name order: (1) model-vs-human raw data "
        "of one experiment "
        "(bethgelab/model-vs-human raw-data/EXPERIMENT/; the header has subj and imagename, in any case): one "
        "CSV per observer with columns subj, session, trial, rt, object_response, category, condition, "
        "imagename; each subj is a rater (human when its name starts with 'subject-', as model-vs-human decides, "
        "else a model), trials are matched by the short image name (model-vs-human's get_short_imagename), "
        "category is the label, 'na' is no response (counted wrong) and an image an observer lacks is left out "
        "of its accuracy and error consistency; summary.json's 'conditions' gives per condition Fleiss' kappa, "
        "mean agreement, each rater's accuracy and the mean error consistency within the condition (as "
        "model-vs-human computes it). (2) Per-image prediction tables: one CSV per model (named by the file's "
        "stem) with a "
        "file-name column and a predicted-class column, rows in any order, matched by file name; an image a file "
        "lacks is no response; labels from --labels. With labels, also writes error_consistency.csv (Geirhos "
        "et al. 2020: Cohen's kappa of right/wrong of two raters over the labelled stimuli both were shown, no "
        "response counting as wrong; a square table over all raters, names in the header and first column) and "
        "in summary.json the mean error "
        "consistency over all pairs and within and between rater groups (human-human, human-model, model-model; "
        "models-models without groups).",
    )
    agreement.add_argument("predictions", type=Path, metavar="PREDICTIONS")
    agreement.add_argument("--out", type=Path, required=True, metavar="DIR")
    agreement.add_argument(
        "--categories", type=Path, metavar="FILE", help="category names, one per line, in index order"
    )
    agreement.add_argument("--num-categories", type=_positive_int, help="number of categories for integer responses")
    agreement.add_argument(
        "--raters", choices=("all", "models", "humans"), metavar="all|models|humans",
        help="model-vs-human folders: keep all observers (default), only models or only human subjects "
        "(subj names starting with 'subject-')",
    )
    agreement.add_argument(
        "--labels", type=Path, metavar="FILE",
        help="per-image folders: a CSV of true labels with a file-name column and a label column (e.g. file_name, "
        "label); stimuli are its images in its order, and an image in a prediction file that it lacks is an error",
    )
    agreement.add_argument(
        "--file-column", metavar="NAME",
        help="per-image folders: the file-name column of the prediction files (and of --labels when it has it); "
        "default: the first of file_name, filename, file, image, image_name, imagename, image_id, img, path, "
        "file_path, filepath, image_path (names compared ignoring case)",
    )
    agreement.add_argument(
        "--prediction-column", metavar="NAME",
        help="per-image folders: the predicted-class column (a class name or index); default: the first of "
        "predicted_class, prediction, predictions, pred, predicted_label, predicted, top1, top_1, top-1, "
        "predicted_class_name, class_prediction",
    )
    agreement.add_argument(
        "--label-column", metavar="NAME",
        help="per-image folders: the label column of --labels; default: the first of label, true_label, "
        "true_class, target, ground_truth, gt, category, class",
    )
    _add_analysis_options(agreement)
    agreement.add_argument("--seed", type=int, default=0, help="seed of the bootstrap's draws (default 0)")
    agreement.add_argument(
        "--distributed", action="store_true",
        help="split the stimuli over several processes (jax.distributed: JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES and JAX_PROCESS_ID on each, or a cluster JAX detects): each process reads a block "
        "of the stimuli (only that block's columns of an .npy or uncompressed .npz; other inputs are read "
        "whole and cut), the agreement statistics are combined, and process 0 writes the same files as one "
        "process (with labels: accuracy, bins and error consistency from counts summed over the processes). "
        "Not with --bootstrap or --export-counts, nor with conditions, an observed mask or folders of CSV files "
        "(an error says so)")
    agreement.add_argument(
        "--export-counts", choices=("csv", "npy", "npz"), metavar="csv|npy|npz",
        help="also write counts.FORMAT: the [stimuli, categories] count table in the layout statsmodels' "
             "fleiss_kappa takes (one column per category, every category kept). statsmodels assumes as many "
             "raters on every stimulus: a stimulus with fewer responses is an error naming it. csv: stimulus "
             "column then one per category name (refused above 2e7 cells); npz: counts, stimuli, categories, models")

    cka = commands.add_parser(
        "cka", parents=[common],
        help="linear CKA of every pair of models",
        description="FEATURES: an .npz with one [stimuli, dim] array per model, or a folder of .npy files. "
        "Writes cka.csv (the square matrix), cka_long.csv and/or cka_long.parquet (one row per pair of models, "
        "see --long-format) and cka.png (a heatmap).",
    )
    cka.add_argument("features", type=Path, metavar="FEATURES")
    cka.add_argument("--out", type=Path, required=True, metavar="DIR")
    cka.add_argument("--debiased", action="store_true", help="unbiased HSIC estimator (Song et al. 2012)")
    cka.add_argument(
        "--stimuli", type=Path, metavar="FILE",
        help="use only these stimuli: a CSV with an 'index' column (e.g. contrastive.csv) or one index per line",
    )
    cka.add_argument("--families", type=Path, metavar="FILE",
                     help="CSV with columns model, family, or the zoo file (only read): group the heatmap")
    cka.add_argument(
        "--long-format", choices=("csv", "parquet", "both"), default="csv",
        help="also write the matrix as a long table, one row per unordered pair of models (model_a, model_b, cka; "
        "family_a, family_b, same_family with --families; FIELD_a, FIELD_b per --metadata field): "
        "cka_long.csv (default), cka_long.parquet or both",
    )
    cka.add_argument(
        "--metadata", type=Path, metavar="FILE",
        help="model metadata for the long table: a zoo file (.toml; each model's [model.metadata], only read) "
        "or a CSV with a 'model' column and one column per field",
    )
    cka.add_argument("--max-bytes", type=float, help="bound on Gram blocks held at once (default: 1/4 of memory)")
    cka.add_argument(
        "--matmul-precision", choices=("float32", "tensorfloat32", "bfloat16"), default="float32",
        help="products in float32 (default), TF32 (GPUs) or bfloat16 operands; always float32 accumulation",
    )
    cka.add_argument(
        "--distributed", action="store_true",
        help="split the stimuli over several processes (jax.distributed: JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES and JAX_PROCESS_ID on each, or a cluster JAX detects): each process streams a "
        "contiguous block of every model's features (only those rows of a folder of .npy files or an "
        "uncompressed .npz; a compressed .npz is decompressed up to the block's end) into the exact "
        "feature-space sums (4 D^2 bytes, D = summed dims; twice that within --max-bytes), the sums are added "
        "across processes and process 0 writes the same files as one process. float32 products only "
        "(--matmul-precision float32)",
    )

    identify = commands.add_parser(
        "identify", parents=[common],
        help="how well each stimulus set tells model families apart, with bootstrap intervals",
        description="FEATURES: an .npz with one [stimuli, dim] array per model, or a folder of .npy files "
        "(what extract writes under features/LAYER/), all on one stimulus pool. Stimulus sets: 'all' (the "
        "pool), each --stimuli NAME=FILE, and --random draws. For each set: linear CKA of every pair of models, "
        "its identifiability against the families (AUC of within- against between-family pairs with a "
        "label-permutation p-value, 1-NN identification rate, silhouette, AUPRC, conformity; with "
        "--architectures the architecture identification rate), bootstrap intervals over the set's "
        "stimuli (the replicates' percentile spread placed at the estimate: for the score at the set's size), "
        "and each set minus the baseline (interval, two-sided bootstrap p). Writes identify.json, "
        "identify.csv (set, num_stimuli, score, value, low, high), identify_scores.png and identify_cka.png.",
    )
    identify.add_argument("features", type=Path, metavar="FEATURES",
                          help="features of every model on one stimulus pool (.npz, or a folder of .npy)")
    identify.add_argument(
        "--families", type=Path, required=True, metavar="FILE",
        help="each model's family: a CSV with columns model, family, or the zoo file (.toml) whose entries "
        "have 'family' (read only: python: sources are not imported)",
    )
    identify.add_argument("--out", type=Path, required=True, metavar="DIR",
                          help="the folder to write (replaced as a whole; only a jaxagree identify folder)")
    identify.add_argument(
        "--stimuli", type=_named_file, action="append", default=[], metavar="NAME=FILE",
        help="a stimulus set: NAME and a file of stimulus indices into FEATURES (a CSV with an 'index' column, "
        "e.g. agreement's contrastive.csv, or one index per line); repeat for several sets",
    )
    identify.add_argument(
        "--random", type=_count, metavar="N",
        help="N random draws (random_0, random_1, ...) of the size of the first --stimuli set, disjoint "
        "from it (default: 1 when a --stimuli set is given, else 0)",
    )
    identify.add_argument(
        "--baseline", metavar="NAME",
        help="the set every other set is compared with: all, a --stimuli NAME or random_I "
        "(default: random_0 when drawn, else none)",
    )
    identify.add_argument("--bootstrap", type=_positive_int, default=200, metavar="B",
                          help="bootstrap resamples of each set's stimuli (default: 200)")
    identify.add_argument("--permutations", type=_positive_int, default=1000, metavar="P",
                          help="label permutations for each set's AUC p-value (default: 1000)")
    identify.add_argument("--debiased", action="store_true", help="unbiased HSIC estimator (Song et al. 2012)")
    identify.add_argument("--seed", type=int, default=0, metavar="S",
                          help="seed of the random draws, the resamples and the permutations (default: 0)")
    identify.add_argument(
        "--architectures", type=Path, metavar="FILE",
        help="a CSV with columns model, architecture (models of one architecture trained with several seeds): "
        "also report how often a model's nearest model is of its own architecture",
    )
    identify.add_argument("--max-bytes", type=float, metavar="BYTES",
                          help="bound on Gram blocks held at once (default: 1/4 of memory)")

    extract = commands.add_parser(
        "extract", parents=[common],
        help="predictions and features of every model of a zoo on a stimulus set (cached, resumable)",
        description=SOURCES_HELP,
    )
    extract.add_argument("--zoo", type=Path, required=True, metavar="ZOO", help="zoo.toml inventory")
    extract.add_argument("--stimuli", required=True, metavar="SOURCE")
    _add_source_options(extract)
    extract.add_argument(
        "--label-space", metavar="SPACE",
        help="predict within these categories: imagenet, objectnet, 16-class, or a mapping file "
        "(.json {category: [classes]}, or .csv/.tsv with columns category,class)",
    )
    extract.add_argument(
        "--decision", choices=("max", "mean"), default="max",
        help="with --label-space: the category of the most probable class (max, default) or of the highest "
        "mean probability over its classes (mean)",
    )
    extract.add_argument("--out", type=Path, required=True, metavar="DIR")
    extract.add_argument("--batch-size", type=_positive_int, default=128, help="images per step over all devices")
    extract.add_argument(
        "--layers", default="penultimate", metavar="NAMES",
        help="comma-separated layers whose pooled features to write (default: penultimate); "
        "an unknown name lists the model's layers",
    )
    extract.add_argument("--no-progress", action="store_true", help="no progress bars")
    extract.add_argument(
        "--trust-code", action="store_true",
        help="allow python:MODULE:FUNCTION sources, which import and run code the zoo file names: "
        "a zoo file with python: entries is code, so use this only for zoo files you trust",
    )
    extract.add_argument(
        "--distributed", action="store_true",
        help="several processes (jax.distributed): models split across them, outputs written by process 0; "
        "implied by JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES and JAX_PROCESS_ID); "
        "auto-detected on Slurm, Open MPI and TPU pods",
    )

    convert = commands.add_parser(
        "convert", parents=[common],
        help="write a stimulus source as a TFDS dataset (ArrayRecord) for fast reuse: tfds:NAME:SPLIT",
        description=SOURCES_HELP,
    )
    convert.add_argument("stimuli", metavar="SOURCE")
    convert.add_argument("--name", required=True, help="the dataset's name (lower case, digits, _)")
    convert.add_argument("--split", default="stimuli", help="the split to write (default: stimuli)")
    _add_source_options(convert, data_dir_help="where to write the dataset (and to read tfds: sources from)")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar")

    imagenet = commands.add_parser(
        "prepare-imagenet", parents=[common],
        help="write ILSVRC2012_img_val.tar as tfds' imagenet2012 validation split (no TensorFlow needed)",
    )
    imagenet.add_argument("archive", type=Path, metavar="ILSVRC2012_img_val.tar")
    imagenet.add_argument("--data-dir", type=Path, required=True, metavar="DIR")
    imagenet.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = commands.add_parser(
        "demo", parents=[common], help="the study on its embedded default: trains a zoo offline, writes report.html",
        description="Trains a zoo of conv nets, ViTs and MLP-Mixers on cluttered handwritten digits (bundled with "
        "scikit-learn: no download), runs every model over a pool of held-out digits and synthetic probes, checks "
        "the paper's claims (agreement by accuracy over all vs contrastive stimuli; how well each stimulus set "
        "separates the families, with bootstrap intervals) and writes report.html, report.md, the figures and "
        "summary.json. DIR keeps zoo/ and cache/: a second run reuses the trained models and their outputs.",
    )
    demo.add_argument("--out", type=Path, default=Path("jaxagree-demo"), metavar="DIR",
                      help="output folder (default ./jaxagree-demo)")
    demo.add_argument("--quick", action="store_true", help="fewer models, stimuli and resamples (a minute or two)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser

