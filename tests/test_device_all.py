"""benchmarks/device_all.py: its CPU dry run at tiny sizes (so the GPU script cannot rot), and
that a wrong answer or a failing section is reported rather than passed over."""

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxagree as ja
from benchmarks import device_all


def test_quick_run_writes_every_section_with_passed_checks(tmp_path):
    result = device_all.main(["--quick", "--out", str(tmp_path)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["all-cpu-" + result["machine"]["date"] + "-quick" + ext for ext in (".json", ".md")]
    saved = json.loads((tmp_path / files[0]).read_text())
    assert [s["name"] for s in saved["sections"]] == list(device_all.SECTIONS)
    for section in saved["sections"]:
        assert section["status"] == "ok", (section["name"], section.get("error"), section["checks"])
        assert section["checks"] and all(c["passed"] for c in section["checks"]), section["name"]
        assert section["rows"] and not section["skipped"], section["name"]
    assert saved["ok"] is True
    by_name = {s["name"]: s for s in saved["sections"]}
    assert {r["precision"] for r in by_name["cka"]["rows"]} == set(device_all.PRECISIONS)
    assert {r["model"] for r in by_name["extract"]["rows"]} == {"ViT-B/16", "ResNet-50"}
    assert all(r["gflops_per_image"] > 0 and r["mfu"] > 0 for r in by_name["extract"]["rows"])
    text = (tmp_path / files[1]).read_text()
    for name in device_all.SECTIONS:
        assert f"## {name}: ok" in text
    assert "| 30 x 1,000 x 50 |" in text and "| 6 x 64 x 16 | bfloat16 |" in text


def test_the_check_helper_flags_a_wrong_value():
    section = {"checks": []}
    assert device_all.check(section, "close", 1e-7, 1e-6)
    assert not device_all.check(section, "too far", 1e-3, 1e-6)
    assert not device_all.check(section, "not a number", float("nan"), 1e-6)
    assert [c["passed"] for c in section["checks"]] == [True, False, False]


def test_a_wrong_kernel_fails_its_section_and_an_error_does_not_stop_the_run(tmp_path, monkeypatch):
    right_kappa = ja.fleiss_kappa
    monkeypatch.setattr(ja, "fleiss_kappa", lambda *args, **kwargs: right_kappa(*args, **kwargs) * 0.999)

    def broken(*args, **kwargs):
        raise RuntimeError("planted")

    monkeypatch.setattr(ja, "cka_matrix", broken)
    result = device_all.main(["--quick", "--out", str(tmp_path), "--sections", "device,agreement,cka"])
    status = {s["name"]: s["status"] for s in result["sections"]}
    assert status == {"device": "ok", "agreement": "failed", "cka": "error"}
    assert result["ok"] is False
    agreement = result["sections"][1]
    assert [c["passed"] for c in agreement["checks"] if "kappa" in c["check"]] == [False, False]
    assert "RuntimeError: planted" in result["sections"][2]["error"]
    text = next(tmp_path.glob("*.md")).read_text()
    assert "## agreement: failed" in text and "| NO |" in text and "## cka: error" in text


def test_the_float64_agreement_reference_matches_a_direct_count():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 7, (5, 40)).astype(np.int32)
    counts = np.stack([np.bincount(preds[:, i], minlength=7) for i in range(40)]).astype(np.float64)
    n = counts.sum(1)
    agreement = ((counts**2).sum(1) - n) / (n * (n - 1))
    p = counts.sum(0) / counts.sum()
    kappa = (agreement.mean() - (p**2).sum()) / (1 - (p**2).sum())
    got_agreement, got_kappa = device_all.agreement_reference(jnp.asarray(preds), 7, chunk_values=25)  # 5 a chunk
    np.testing.assert_allclose(got_agreement, agreement, rtol=0, atol=1e-12)
    assert got_kappa == pytest.approx(kappa, abs=1e-12)


def test_unknown_sections_are_refused():
    with pytest.raises(SystemExit):
        device_all.main(["--quick", "--sections", "agreement,nope"])


def test_the_command_line_entry_point_exits_with_the_checks_status(tmp_path):
    """The README's device command (`python -m benchmarks.device_all`), on one short section."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "benchmarks.device_all", "--quick", "--sections", "device",
                           "--out", str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "device: ok" in done.stdout and "all sections passed their checks" in done.stdout
    assert len(list(tmp_path.glob("all-cpu-*-quick.json"))) == 1


def test_a_section_past_its_budget_skips_and_lists_the_rest(monkeypatch):
    monkeypatch.setitem(device_all.BUDGET_S, "cka", 0.0)
    (cka,) = device_all.main(["--quick", "--sections", "cka"])["sections"]
    assert cka["status"] == "ok"  # what ran was checked; the skipped cases are listed, not failed
    assert [(r["case"], r["precision"]) for r in cka["rows"]] == [("4 x 64 x 16", "float32")]
    assert [s.split(":")[0] for s in cka["skipped"]] == ["4 models tensorfloat32", "4 models bfloat16", "6 models"]
