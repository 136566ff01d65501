"""Runs CLI commands in one process under a memory limit and reports what each did (used by
tests/test_bad_input.py). Usage: python -m tests.bad_input_worker CASES.json RESULTS.json LIMIT_BYTES

Every case runs in this one process (jax is imported once), with the address space capped: a
reader that sized anything by a hostile value would hit the cap and fail its case.
"""

import contextlib
import io
import json
import os
import resource
import sys
import traceback


def main() -> None:
    cases_path, results_path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from jaxagree.cli import main as cli

    results = {}
    for case in json.load(open(cases_path)):
        out, err = io.StringIO(), io.StringIO()
        bug = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli(case["argv"])
            except SystemExit as exit_:  # argparse's own errors
                code = exit_.code
            except BaseException:  # noqa: BLE001 - a traceback is what the test reports
                code, bug = None, traceback.format_exc()
        results[case["id"]] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "bug": bug,
                               "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    with open(results_path, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
