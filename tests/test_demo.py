"""`jaxagree demo --quick` end to end: trains its zoo, extracts, runs the study, writes the report;
its summary equals the library on its cached outputs, a checkpoint restores to the cached
predictions, and a second run trains and runs nothing."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxagree.analysis import analyse_agreement, compare_stimulus_sets
from jaxagree.cli import main
from jaxagree.data import open_stimuli
from jaxagree.demo import QUICK, run_demo
from jaxagree.models import load_model, read_zoo
from jaxagree.pipeline import extract, preprocess_images


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "jaxagree-demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_the_report_is_written(demo, capsys):
    for name in ("report.html", "report.md", "summary.json"):
        assert (demo / name).is_file(), name
    for name in ("fig1_cka_by_set.png", "fig2_accuracy_by_budget.png", "fig3_kappa_by_accuracy.png",
                 "fig4_agreement_sorted.png", "identify_scores.png", "gallery.png"):
        assert (demo / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    summary = json.loads((demo / "summary.json").read_text())
    zoo = read_zoo(demo / "zoo" / "zoo.toml")
    assert summary["num_models"] == len(zoo) and len({spec.family for spec in zoo}) == 3
    assert set(summary["identifiability"]["sets"]) == {"all", "contrastive", "random", "squares", "local_global"}
    for entry in summary["identifiability"]["sets"].values():
        auc = entry["scores"]["auc"]
        assert auc["low"] <= auc["value"] <= auc["high"] or not np.isfinite(auc["low"])
    assert len(summary["kappa_all"]) == len(summary["kappa_contrastive"]) == QUICK.num_bins
    assert all(isinstance(claim["held"], bool | None) for claim in summary["claims"].values())


def test_summary_equals_the_library_on_the_cached_outputs(demo):
    summary = json.loads((demo / "summary.json").read_text())
    zoo = read_zoo(demo / "zoo" / "zoo.toml")
    sources = QUICK.sources()
    pool = open_stimuli(sources["pool"])
    run = extract(zoo, pool, cache_dir=demo / "cache", progress=False)
    assert all(rate is None for rate in run.images_per_second.values())  # all from the cache
    analysis = analyse_agreement(run.predictions, num_categories=10, labels=pool.labels, k=QUICK.k,
                                 num_bins=QUICK.num_bins, num_bootstrap=QUICK.num_bootstrap)
    np.testing.assert_allclose(summary["kappa_all"], analysis.per_bin.kappa_all, atol=1e-6)
    np.testing.assert_allclose(summary["kappa_contrastive"], analysis.per_bin.kappa_contrastive, atol=1e-6)
    np.testing.assert_allclose([m["accuracy"] for m in summary["models"]], analysis.accuracy, atol=1e-6)
    rng = np.random.default_rng(0)
    contrastive = np.sort(analysis.contrastive)
    others = np.setdiff1d(np.arange(QUICK.pool), contrastive)
    sets = {"all": np.arange(QUICK.pool), "contrastive": contrastive,
            "random": np.sort(rng.choice(others, QUICK.k, replace=False))}
    comparison = compare_stimulus_sets(run.features["penultimate"], [spec.family for spec in zoo], sets,
                                       baseline="random", num_bootstrap=QUICK.num_bootstrap,
                                       num_permutations=QUICK.num_permutations)
    for name, result in comparison.sets.items():
        auc = summary["identifiability"]["sets"][name]["scores"]["auc"]
        assert auc["value"] == pytest.approx(float(result.scores.auc), abs=1e-6), name


def test_a_checkpoint_restores_to_the_cached_predictions(demo):
    zoo = read_zoo(demo / "zoo" / "zoo.toml")
    pool = open_stimuli(QUICK.sources()["pool"])
    run = extract(zoo, pool, cache_dir=demo / "cache", progress=False)
    for index in (0, len(zoo) - 1):
        model = load_model(zoo[index])
        images = preprocess_images(jnp.asarray(pool.read(range(64))), model.preprocess)
        logits, _ = jax.jit(model.forward)(model.params, images)
        np.testing.assert_array_equal(np.asarray(jnp.argmax(logits, -1)), run.predictions[index, :64])
        # Trained: above chance (0.1) on held-out digits, even in the quick zoo's 100 steps.
        assert zoo[index].metadata["heldout_accuracy"] > 0.1


def test_a_second_run_trains_and_runs_nothing(demo):
    again = run_demo(demo, quick=True, progress=False, staging=demo.parent / "second-report")
    assert all(result.reused for result in again.trained)
    assert again.models_run == 0
    first = json.loads((demo / "summary.json").read_text())
    second = json.loads((demo.parent / "second-report" / "summary.json").read_text())
    assert second["kappa_all"] == first["kappa_all"] and second["identifiability"] == first["identifiability"]


def tour_commands() -> list[list[str]]:
    """The README's five-minute tour, one argument list per `jaxagree` command."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index("## Five-minute tour"):], flags=re.S).group(1)
    lines = shlex.split(block.replace("\\\n", " "), comments=True)
    commands, current = [], None
    for word in lines:
        if word.endswith("bin/jaxagree"):
            current = []
            commands.append(current)
        elif current is not None:
            current.append(word)
    return commands


def test_the_readme_tour_runs_as_written(demo, capsys):
    commands = tour_commands()
    assert [c[0] for c in commands] == ["demo", "extract", "agreement", "cka", "identify"]
    assert commands[0] == ["demo", "--quick", "--out", "tour/demo"]  # what the fixture ran, into `demo`
    root = demo.parent / "tour"
    root.mkdir()
    (root / "demo").symlink_to(demo)
    for args in commands[1:]:
        args = [str(demo.parent / a) if a.startswith("tour/") else a for a in args]
        args = [a.replace("=tour/", f"={demo.parent}/tour/") for a in args]
        assert main(args + (["--no-progress"] if args[0] == "extract" else [])) == 0, args
    run = root / "run"
    assert (run / "predictions.npz").is_file() and len(list((run / "features" / "penultimate").iterdir())) == 6
    for path in ("agreement/fig3_kappa_by_accuracy.png", "agreement/contrastive.csv", "cka/cka.png",
                 "identify/identify.csv", "identify/identify_scores.png"):
        assert (run / path).is_file(), path
    identify = json.loads((run / "identify" / "identify.json").read_text())
    assert {"all", "contrastive", "random_0", "random_1", "random_2"} <= set(identify["sets"])
    capsys.readouterr()
