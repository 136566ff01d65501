"""`--out` and the way commands end: a folder never mixes two runs nor holds a half-written result,
expected failures are one line with a meaningful exit status, and JSON is strict everywhere."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxagree.cli import main
from jaxagree.io import MARKER, OutputFolder
from jaxagree.report import _agreement as agreement_report

ROOT = Path(__file__).resolve().parents[1]


def _predictions(path: Path, *, labels: bool) -> Path:
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 3, (12, 40))
    arrays = {"predictions": preds}
    if labels:
        arrays["labels"] = rng.integers(0, 3, 40)
    np.savez(path, **arrays)
    return path


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_a_rerun_replaces_every_file_of_the_earlier_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["agreement", str(_predictions(tmp_path / "labelled.npz", labels=True)), "--out", str(out)]) == 0
    with_labels = _files(out)
    assert {"accuracy.csv", "bins.csv", "fig3_kappa_by_accuracy.png"} <= with_labels
    assert main(["agreement", str(_predictions(tmp_path / "plain.npz", labels=False)), "--out", str(out)]) == 0
    assert _files(out) == {"summary.json", "agreement.csv", "contrastive.csv", "fig4_agreement_sorted.png"}
    marker = json.loads((out / MARKER).read_text())
    assert marker["command"] == "agreement" and sorted(marker["entries"]) == sorted(_files(out))
    assert not [p for p in out.iterdir() if p.name.startswith(".jaxagree-staging")]
    capsys.readouterr()


def test_a_write_that_fails_midway_leaves_the_earlier_run_whole(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    source = _predictions(tmp_path / "labelled.npz", labels=True)
    assert main(["agreement", str(source), "--out", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in _files(out)}
    capsys.readouterr()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "fig4_agreement_sorted.png"))

    monkeypatch.setattr(agreement_report, "plot_sorted_agreement", disk_full)
    assert main(["agreement", str(_predictions(tmp_path / "plain.npz", labels=False)), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"jaxagree agreement: error: {out / 'fig4_agreement_sorted.png'}: No space left on device\n"
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".jaxagree-staging")]


def test_a_failed_first_run_leaves_no_folder(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "summary.json")

    monkeypatch.setattr(agreement_report, "write_json", broken)
    out = tmp_path / "new" / "out"
    assert main(["agreement", str(_predictions(tmp_path / "p.npz", labels=False)), "--out", str(out)]) == 1
    assert "summary.json: Input/output error" in capsys.readouterr().err
    assert not out.exists()


def test_a_folder_of_someone_elses_files_is_never_touched(tmp_path, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    code = main(["agreement", str(_predictions(tmp_path / "p.npz", labels=False)), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "holds files that jaxagree did not write (e.g. 'chapter1.tex')" in err
    assert _files(out) == {"chapter1.tex"} and (out / "chapter1.tex").read_text() == "precious"


def test_another_commands_results_are_not_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["agreement", str(_predictions(tmp_path / "p.npz", labels=False)), "--out", str(out)]) == 0
    np.savez(tmp_path / "f.npz", a=np.random.default_rng(0).normal(size=(10, 3)), b=np.eye(10)[:, :4])
    capsys.readouterr()
    assert main(["cka", str(tmp_path / "f.npz"), "--out", str(out)]) == 2
    assert "holds the results of `jaxagree agreement`" in capsys.readouterr().err
    assert "summary.json" in _files(out) and "cka.csv" not in _files(out)


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_out_that_is_or_is_under_a_file_is_checked_before_the_analysis(tmp_path, capsys, monkeypatch, where):
    calls = []
    monkeypatch.setattr("jaxagree.io.read_predictions", lambda *a, **k: calls.append(1))
    blocker = tmp_path / "results.txt"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "out"
    assert main(["agreement", str(tmp_path / "p.npz"), "--out", str(out)]) == 2
    assert calls == []  # nothing was read: --out is checked first
    err = capsys.readouterr().err
    assert err.startswith(f"jaxagree agreement: error: --out {out}") and "a file" in err
    assert blocker.read_text() == "x"


def test_staging_left_by_a_killed_run_is_cleared(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["agreement", str(_predictions(tmp_path / "p.npz", labels=False)), "--out", str(out)]) == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".jaxagree-staging-{int(dead.stdout)}-1"
    stale.mkdir()
    (stale / "summary.json").write_text("{}")
    assert main(["agreement", str(_predictions(tmp_path / "p.npz", labels=False)), "--out", str(out)]) == 0
    assert not stale.exists()
    capsys.readouterr()


def test_output_folder_commits_only_on_success(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out, "agreement") as staging:
        (staging / "a.csv").write_text("1")
    assert _files(out) == {"a.csv"}
    with pytest.raises(RuntimeError), OutputFolder(out, "agreement") as staging:
        (staging / "b.csv").write_text("2")
        raise RuntimeError("the run failed")
    assert _files(out) == {"a.csv"}


def test_kept_entries_outlive_runs(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out, "extract", keep=("cache",)) as staging:
        (out / "cache").mkdir()
        (out / "cache" / "entry.npy").write_text("model")
        (staging / "predictions.npz").write_text("1")
        (staging / "features").mkdir()
    with OutputFolder(out, "extract", keep=("cache",)) as staging:
        (staging / "predictions.npz").write_text("2")
    assert _files(out) == {"cache", "predictions.npz"}  # the earlier features/ went with its run
    assert (out / "cache" / "entry.npy").read_text() == "model"


# ---------------------------------------------------------------------------------------------
# How commands end


def test_stdout_and_summary_json_are_the_same_strict_json(tmp_path, capsys):
    # Every model answers 0 everywhere: chance agreement is 1 and Fleiss' kappa is NaN.
    np.save(tmp_path / "same.npy", np.zeros((4, 30), np.int64))
    out = tmp_path / "out"
    assert main(["agreement", str(tmp_path / "same.npy"), "--out", str(out), "--num-categories", "3"]) == 0
    printed = capsys.readouterr().out

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))

    assert strict(printed) == strict((out / "summary.json").read_text())
    assert strict(printed)["fleiss_kappa"] is None
    assert printed.strip() == (out / "summary.json").read_text().strip()


def test_debug_shows_the_traceback(tmp_path, capsys):
    (tmp_path / "p.npy").write_text("not an array")
    with pytest.raises(ValueError, match="not a valid .npy file"):
        main(["agreement", str(tmp_path / "p.npy"), "--out", str(tmp_path / "o"), "--debug"])
    assert main(["agreement", str(tmp_path / "p.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_format_3_npy_is_named_not_a_traceback(tmp_path):
    # NumPy writes format 3.0 for structured arrays whose field names need UTF-8.
    with pytest.warns(UserWarning, match="format 3.0"):
        np.save(tmp_path / "p.npy", np.zeros(3, dtype=[("\u00e9\u4e00", "i4")]))
    assert (tmp_path / "p.npy").read_bytes()[6:8] == b"\x03\x00"
    with pytest.raises(ValueError, match=r"p.npy: .npy format 3.0 \(a structured array"):
        main(["agreement", str(tmp_path / "p.npy"), "--out", str(tmp_path / "o"), "--debug"])


def test_an_interrupted_run_exits_130_and_writes_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("jaxagree.analysis.analyse_agreement", interrupted)
    out = tmp_path / "out"
    assert main(["agreement", str(_predictions(tmp_path / "p.npz", labels=False)), "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()


def test_a_real_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise TypeError("a bug in jaxagree")

    monkeypatch.setattr("jaxagree.analysis.analyse_agreement", bug)
    with pytest.raises(TypeError, match="a bug in jaxagree"):
        main(["agreement", str(_predictions(tmp_path / "p.npz", labels=False)), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_the_console_script_exits_2_with_one_line_for_a_damaged_file(tmp_path):
    np.savez(tmp_path / "full.npz", predictions=np.zeros((3, 50), np.int64))
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    script = Path(sys.executable).parent / "jaxagree"
    done = subprocess.run([str(script), "agreement", str(tmp_path / "cut.npz"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"jaxagree agreement: error: {tmp_path / 'cut.npz'}: not a valid .npz file (a zip archive of .npy arrays): "
        "File is not a zip file; it may be truncated"]
    assert done.stdout == "" and not (tmp_path / "o").exists()


def test_an_extract_rerun_with_fewer_models_leaves_no_stale_features(tmp_path, capsys):
    # Stale feature files would silently join the next `jaxagree cka run/features/penultimate`.
    entry = '[[model]]\nname = "{}"\nsource = "native:convnet/tiny"\nfamily = "conv"\nnum_classes = 4\nseed = {}\n'
    (tmp_path / "two.toml").write_text(entry.format("a", 0) + entry.format("b", 1))
    (tmp_path / "one.toml").write_text(entry.format("a", 0))
    np.savez(tmp_path / "images.npz", images=np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), np.uint8))
    out = tmp_path / "run"
    base = ["extract", "--stimuli", f"npz:{tmp_path / 'images.npz'}", "--out", str(out), "--no-progress"]
    assert main([*base, "--zoo", str(tmp_path / "two.toml")]) == 0
    assert sorted(p.name for p in (out / "features" / "penultimate").iterdir()) == ["a.npy", "b.npy"]
    assert main([*base, "--zoo", str(tmp_path / "one.toml")]) == 0
    assert sorted(p.name for p in (out / "features" / "penultimate").iterdir()) == ["a.npy"]
    assert "cached" in capsys.readouterr().out  # model a came from the cache, which outlives runs


def test_a_rerun_leaves_what_another_command_wrote_inside_the_folder(tmp_path, capsys):
    # The README's tour writes `agreement --out run/agreement` inside `extract --out run`: a rerun of
    # the outer command replaces only what its earlier run wrote (the marker's entries).
    out = tmp_path / "out"
    table = _predictions(tmp_path / "labelled.npz", labels=True)
    assert main(["agreement", str(table), "--out", str(out)]) == 0
    assert main(["agreement", str(table), "--out", str(out / "inner")]) == 0
    assert main(["agreement", str(_predictions(tmp_path / "plain.npz", labels=False)), "--out", str(out)]) == 0
    assert "inner" in _files(out) and "summary.json" in _files(out / "inner")
    assert "accuracy.csv" not in _files(out)  # the earlier run's own files did go
    capsys.readouterr()
