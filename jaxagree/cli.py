"""Command line: parse arguments, call the library, print what was written."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jaxagree._cli_parser import SOURCES_HELP, build_parser, open_stimuli_of


def _run_agreement(table, args, output) -> int:
    """The agreement analysis of ``table``, its results swapped into ``output``."""
    from jaxagree.analysis import analyse_agreement
    from jaxagree.io import json_text
    from jaxagree.report import agreement_summary, write_agreement_report

    analysis = analyse_agreement(
        table.predictions,
        num_categories=table.num_categories,
        labels=table.labels,
        observed=table.observed,
        conditions=table.conditions,
        k=args.k,
        num_bins=args.bins,
        bin_edges=args.bin_edges,
        num_bootstrap=args.bootstrap,
        seed=args.seed,
        confidence=args.confidence,
    )
    with output as staging:
        written = list(write_agreement_report(analysis, table, staging).values())
        if args.export_counts is not None:
            from jaxagree.io import write_count_table

            written.append(write_count_table(staging / f"counts.{args.export_counts}", table))
    print(json_text(agreement_summary(analysis, table)))
    _print_written(output, [Path(p).name for p in written])
    return 0


def _print_written(output, names: Sequence[str]) -> None:
    """The written files, named where they are now (moved from the staging folder)."""
    print("wrote " + ", ".join(str(output.out / name) for name in names), file=sys.stderr)


def _start_distributed() -> None:
    """``jax.distributed`` from the environment, its failures as one-line errors."""
    from jaxagree.distributed import check_environment
    from jaxagree.sharding import start_distributed

    check_environment()
    try:
        start_distributed()
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"--distributed: could not join the other processes: {str(error).splitlines()[0]}") \
            from None
    _native_stdout_to_stderr()


def _native_stdout_to_stderr() -> None:
    """Gloo (CPU collectives) writes "[Gloo] Rank N is connected ..." to the C-level stdout at the
    first collective, which would corrupt the JSON a command prints: the process's file descriptor
    1 is pointed at stderr, and Python's ``sys.stdout`` keeps writing to the original stdout."""
    import io
    import os

    sys.stdout.flush()
    original = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(original, "wb"), encoding=sys.stdout.encoding, line_buffering=True)


def _run_cka_distributed(args) -> int:
    import numpy as np

    from jaxagree.analysis import summarise_cka
    from jaxagree.distributed import FeatureSource, cka_distributed
    from jaxagree.io import OutputFolder, read_indices, read_model_metadata
    from jaxagree.io.results import check_output_folder
    from jaxagree.report import write_cka_report

    if args.matmul_precision != "float32":
        raise ValueError(f"--distributed computes in float32; --matmul-precision {args.matmul_precision} applies "
                         "to one process only")
    _start_distributed()
    import jax

    source = families = metadata = stimuli = error = None
    try:  # every process checks everything: an error on one stops all, before any work
        check_output_folder(args.out, "cka")
        source = FeatureSource(args.features)
        families = None if args.families is None else _read_groups(args.families, source.models)
        metadata = None if args.metadata is None else read_model_metadata(args.metadata, source.models)
        stimuli = np.arange(source.num_stimuli, dtype=np.int64) if args.stimuli is None else \
            read_indices(args.stimuli, source.num_stimuli)
    except (ValueError, OSError) as failure:
        error = failure
    seconds: dict = {}
    matrix = cka_distributed(source, stimuli, debiased=args.debiased, error=error, seconds=seconds,
                             max_bytes=None if args.max_bytes is None else int(args.max_bytes))
    print(f"process {jax.process_index()} of {jax.process_count()}: {seconds['stimuli']:,} stimuli in steps of "
          f"{seconds['step']:,}, read {seconds['read']:.2f} s, stream {seconds['stream']:.2f} s, combine "
          f"{seconds['combine']:.2f} s, compute {seconds['compute']:.2f} s", file=sys.stderr)
    if jax.process_index() != 0:
        return 0  # process 0 writes the outputs
    analysis = summarise_cka(matrix, source.models, families, stimuli, args.debiased)
    output = OutputFolder(args.out, "cka")
    with output as staging:
        written = write_cka_report(analysis, staging, long_format=args.long_format, metadata=metadata)
    print(f"{len(analysis.models)} models x {len(analysis.stimuli)} stimuli over {jax.process_count()} processes: "
          f"{analysis.title}, mean off-diagonal {analysis.mean_off_diagonal:.4f}")
    _print_written(output, [Path(p).name for p in written.values()])
    return 0


def _run_agreement_distributed(args) -> int:
    from jaxagree.distributed import agreement_distributed, read_prediction_block
    from jaxagree.io import OutputFolder, json_text, read_categories
    from jaxagree.io.results import check_output_folder
    from jaxagree.report import agreement_summary, write_agreement_report

    refused = [option for option, value in (("--bootstrap", args.bootstrap), ("--export-counts", args.export_counts))
               if value is not None]
    if refused:
        raise ValueError(f"--distributed does not support {', '.join(refused)} (they need every stimulus's "
                         "predictions in one place); run without --distributed")
    _start_distributed()
    import jax

    part = error = None
    try:  # every process checks everything: an error on one stops all, before any work
        check_output_folder(args.out, "agreement")
        if args.predictions.is_dir():
            raise ValueError(f"{args.predictions}: --distributed does not support folders of CSV files (their "
                             "raters and labels need every file); run without --distributed")
        categories = read_categories(args.categories) if args.categories is not None else None
        part = read_prediction_block(args.predictions, jax.process_index(), jax.process_count(),
                                     categories=categories, num_categories=args.num_categories,
                                     read_whole=lambda: _read_agreement_input(args, categories))
    except (ValueError, OSError) as failure:
        error = failure
    analysis, table = agreement_distributed(None if part is None else part.table, None if part is None else part.block,
                                            k=args.k, num_bins=args.bins, bin_edges=args.bin_edges, error=error)
    if jax.process_index() != 0:
        return 0  # process 0 writes the outputs
    output = OutputFolder(args.out, "agreement")
    with output as staging:
        written = list(write_agreement_report(analysis, table, staging).values())
    print(json_text(agreement_summary(analysis, table)))
    _print_written(output, [Path(p).name for p in written])
    return 0


def _run_cka(args) -> int:
    from jaxagree.analysis import analyse_cka
    from jaxagree.io import OutputFolder, read_features, read_indices, read_model_metadata
    from jaxagree.report import write_cka_report

    output = OutputFolder(args.out, "cka")
    features = read_features(args.features)
    families = None if args.families is None else _read_groups(args.families, features.models)
    metadata = None if args.metadata is None else read_model_metadata(args.metadata, features.models)
    stimuli = None if args.stimuli is None else read_indices(args.stimuli, features.features[0].shape[0])
    analysis = analyse_cka(features, stimuli=stimuli, families=families, debiased=args.debiased,
                           max_bytes=None if args.max_bytes is None else int(args.max_bytes),
                           matmul_precision=args.matmul_precision)
    with output as staging:
        written = write_cka_report(analysis, staging, long_format=args.long_format, metadata=metadata)
    print(f"{len(analysis.models)} models x {len(analysis.stimuli)} stimuli: {analysis.title}, "
          f"mean off-diagonal {analysis.mean_off_diagonal:.4f}")
    _print_written(output, [Path(p).name for p in written.values()])
    return 0


def _read_groups(path: Path, models: list[str]) -> list[str]:
    """Each model's family, from a CSV (model, family) or a zoo file. A zoo file is only read:
    ``read_zoo(..., trust_code=True)`` checks a ``python:`` entry's form without importing it
    (only loading a model runs code), so any zoo file's families are read, trusted or not; the
    zoo test with an unimportable ``python:`` module guards this."""
    from jaxagree._checks import family_of_each
    from jaxagree.io import read_families

    if path.suffix.lower() != ".toml":
        families = read_families(path, models)
    else:
        from jaxagree.models import read_zoo

        families = {spec.name: spec.family for spec in read_zoo(path, trust_code=True)}
    return family_of_each(families, models, source=str(path))


def _identify_sets(args, num_stimuli: int) -> tuple[dict, str | None]:
    """The stimulus sets by name (all, --stimuli, --random) and the baseline's name."""
    import numpy as np

    from jaxagree.analysis import random_sets
    from jaxagree.io import read_indices

    sets = {"all": np.arange(num_stimuli)}
    for name, path in args.stimuli:
        if name in sets or name.startswith("random_"):
            raise ValueError(f"--stimuli {name}={path}: the name {name!r} is "
                             + ("taken" if name in sets else "kept for --random draws"))
        sets[name] = read_indices(path, num_stimuli)
    count = args.random if args.random is not None else (1 if args.stimuli else 0)
    if count:
        if not args.stimuli:
            raise ValueError("--random: draws take the size of the first --stimuli set; give one")
        first, path = args.stimuli[0]
        size = len(sets[first])
        if 2 * size > num_stimuli:
            raise ValueError(f"--random: draws of {size} stimuli disjoint from {first!r} ({path}) need at least "
                             f"{2 * size} stimuli; FEATURES has {num_stimuli}")
        sets.update(random_sets(num_stimuli, size, count, seed=args.seed, exclude=sets[first]))
    baseline = args.baseline if args.baseline is not None else ("random_0" if "random_0" in sets else None)
    if baseline is not None and baseline not in sets:
        raise ValueError(f"--baseline {baseline!r} is not one of the stimulus sets: {', '.join(sets)}")
    return sets, baseline


def _run_identify(args) -> int:
    from jaxagree.analysis import compare_stimulus_sets
    from jaxagree.io import OutputFolder, read_families, read_features
    from jaxagree.report import identify_line, write_identify_report

    output = OutputFolder(args.out, "identify")
    features = read_features(args.features)
    families = _read_groups(args.families, features.models)
    architectures = None if args.architectures is None else \
        [read_families(args.architectures, features.models, column="architecture")[m] for m in features.models]
    sets, baseline = _identify_sets(args, features.features[0].shape[0])
    comparison = compare_stimulus_sets(
        dict(zip(features.models, features.features)), families, sets, baseline=baseline, num_bootstrap=args.bootstrap,
        debiased=args.debiased, seed=args.seed, num_permutations=args.permutations, architectures=architectures,
        max_bytes=None if args.max_bytes is None else int(args.max_bytes),
    )
    parameters = {"num_permutations": args.permutations, "debiased": args.debiased, "seed": args.seed,
                  "random_draws": {name: sets[name] for name in sets if name.startswith("random_")}}
    with output as staging:
        written = write_identify_report(comparison, features.models, families, staging, parameters=parameters)
    print(f"{len(features.models)} models in {len(comparison.groups)} families "
          f"({', '.join(comparison.groups)}), {comparison.num_bootstrap} resamples per set")
    for name in comparison.sets:
        print(identify_line(name, comparison))
    _print_written(output, [Path(p).name for p in written.values()])
    return 0


def _run_extract(args) -> int:
    import os

    from jaxagree.io import OutputFolder

    # The cache lives in the output folder and outlives runs; the outputs are replaced as a whole.
    output = OutputFolder(args.out, "extract", keep=("cache",),
                          worth_keeping=lambda cache: any(cache.rglob("*.np[yz]")))  # finished or partial results
    if args.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        from jaxagree.sharding import start_distributed

        start_distributed()
    import jax

    from jaxagree.models import read_zoo
    from jaxagree.pipeline import extract, write_extraction

    zoo = read_zoo(args.zoo, trust_code=args.trust_code)
    stimuli = open_stimuli_of(args)
    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    with output as staging:
        result = extract(zoo, stimuli, cache_dir=output.out / "cache", layers=layers, batch_size=args.batch_size,
                         progress=not args.no_progress, label_space=args.label_space, decision=args.decision)
        if jax.process_index() != 0:
            return 0  # process 0 writes the outputs
        written = write_extraction(result, stimuli, staging)
    for name in result.models:
        rate = result.images_per_second[name]
        print(f"{name}: " + ("cached" if rate is None else f"{rate:,.1f} images/s"))
    folders = ", ".join(str(output.out / "features" / layer) for layer in result.features)
    print(f"wrote {output.out / written[0].name} and {len(written) - 1} feature files in {folders}", file=sys.stderr)
    return 0


FOLDER_OPTIONS = ("raters", "labels", "file_column", "prediction_column", "label_column")


def _read_agreement_input(args, categories):
    """The prediction table of ``agreement``'s PREDICTIONS: a file, or a folder of CSV files."""
    from jaxagree.io import read_prediction_folder, read_predictions

    if args.predictions.is_dir():
        return read_prediction_folder(args.predictions, categories=categories, num_categories=args.num_categories,
                                      **{name: getattr(args, name) for name in FOLDER_OPTIONS})
    given = ["--" + name.replace("_", "-") for name in FOLDER_OPTIONS if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{args.predictions}: {', '.join(given)} apply to a folder of CSV files only")
    return read_predictions(args.predictions, categories=categories, num_categories=args.num_categories)


def _run(args) -> int:
    if args.command == "agreement" and args.distributed:
        return _run_agreement_distributed(args)
    if args.command == "cka" and args.distributed:
        return _run_cka_distributed(args)
    if args.command == "agreement":
        from jaxagree.io import OutputFolder, read_categories

        output = OutputFolder(args.out, "agreement")
        categories = read_categories(args.categories) if args.categories is not None else None
        table = _read_agreement_input(args, categories)
        return _run_agreement(table, args, output)
    if args.command == "cka":
        return _run_cka(args)
    if args.command == "identify":
        return _run_identify(args)
    if args.command == "extract":
        return _run_extract(args)
    if args.command == "convert":
        from jaxagree.data.convert import write_tfds
        from jaxagree.data.sources import default_tfds_data_dir

        stimuli = open_stimuli_of(args)
        folder = write_tfds(stimuli, args.data_dir or default_tfds_data_dir(), args.name, split=args.split,
                            progress=not args.no_progress)
        print(f"wrote {len(stimuli)} stimuli to {folder}; read them with --stimuli tfds:{args.name}:{args.split}"
              f" --data-dir {folder.parent.parent}", file=sys.stderr)
        return 0
    if args.command == "prepare-imagenet":
        from jaxagree.data.convert import prepare_imagenet_validation

        folder = prepare_imagenet_validation(args.archive, args.data_dir, progress=not args.no_progress)
        print(f"wrote {folder}; read it with --stimuli tfds:imagenet2012:validation --data-dir {args.data_dir}",
              file=sys.stderr)
        return 0
    if args.command == "demo":
        from jaxagree.demo import KEPT, run_demo
        from jaxagree.io import OutputFolder

        output = OutputFolder(args.out, "demo", keep=KEPT)
        with output as staging:
            result = run_demo(output.out, quick=args.quick, progress=not args.no_progress, staging=staging)
        verdict = {True: "held", False: "did NOT hold", None: "undecided"}
        for claim in result.study.claims:
            print(f"{verdict[claim.held]:>12}: {claim.statement}")
        times = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in result.seconds.items())
        print(f"report: {output.out / 'report.html'} ({times})")
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def _error_text(error: BaseException) -> str:
    """One line for an expected failure: the file and the reason, no traceback."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    if isinstance(error, MemoryError):
        return "out of memory" + (f" ({error})" if str(error) else "") + "; try a smaller batch or --max-bytes"
    return str(error).splitlines()[0] if isinstance(error, OSError) else str(error)


def main(argv: list[str] | None = None) -> int:
    """Run a command. Expected failures print one line naming the culprit: bad input or arguments
    exit with 2 (nothing written), failures during the run (writing, memory) with 1, an
    interruption with 130; anything else is a bug and keeps its traceback. ``--debug`` shows the
    traceback of every error."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError, MemoryError, KeyboardInterrupt) as error:
        if args.debug:
            raise
        if isinstance(error, KeyboardInterrupt):
            print(f"jaxagree {args.command}: interrupted; finished work is kept, run again to resume",
                  file=sys.stderr)
            return 130
        print(f"jaxagree {args.command}: error: {_error_text(error)}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1


__all__ = ["SOURCES_HELP", "build_parser", "main"]  # SOURCES_HELP and build_parser: for docs and tests

if __name__ == "__main__":
    sys.exit(main())
