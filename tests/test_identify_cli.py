"""`jaxagree identify`: stimulus sets scored for how well they tell model families apart, run in
process on planted features whose families differ only on a contrastive subset of stimuli."""

import csv
import json

import numpy as np
import pytest

from jaxagree.analysis import compare_stimulus_sets, random_sets
from jaxagree.cli import main

NUM_STIMULI, SIZE, DIM = 120, 24, 10
MODELS = [f"m{i}" for i in range(8)]
FAMILIES = ["conv"] * 4 + ["vit"] * 4
ARCHITECTURES = ["c1", "c1", "c2", "c2", "v1", "v1", "v2", "v2"]
FAST = ["--bootstrap", "20", "--permutations", "50"]


def planted(seed: int = 0) -> np.ndarray:
    """A shared signal on every stimulus; on the first SIZE stimuli each family adds a strong signal
    of its own (varied a little per architecture), so only those stimuli tell the families apart."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(NUM_STIMULI, 4))
    family_signal = {f: rng.normal(size=(NUM_STIMULI, 4)) for f in sorted(set(FAMILIES))}
    arch_signal = {a: rng.normal(size=(NUM_STIMULI, 4)) for a in sorted(set(ARCHITECTURES))}
    on = (np.arange(NUM_STIMULI) < SIZE)[:, None]
    features = []
    for family, architecture in zip(FAMILIES, ARCHITECTURES):
        own = family_signal[family] + 0.6 * arch_signal[architecture]
        signal = np.concatenate([shared, on * 3.0 * own], 1)
        features.append(signal @ rng.normal(size=(8, DIM)) + 0.3 * rng.normal(size=(NUM_STIMULI, DIM)))
    return np.stack(features).astype(np.float32)


def write_table(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identify-inputs")
    features = planted()
    np.savez(folder / "features.npz", **dict(zip(MODELS, features)))
    write_table(folder / "families.csv", ["model", "family"], zip(MODELS, FAMILIES))
    write_table(folder / "architectures.csv", ["model", "architecture"], zip(MODELS, ARCHITECTURES))
    # As agreement's contrastive.csv: rank, index, ... (here in a shuffled order).
    order = np.random.default_rng(1).permutation(SIZE)
    write_table(folder / "contrastive.csv", ["rank", "index", "agreement"],
                ((rank, int(i), 0.1) for rank, i in enumerate(order)))
    return folder, features


def run(inputs, out, *extra):
    folder, _ = inputs
    return main(["identify", str(folder / "features.npz"), "--families", str(folder / "families.csv"),
                 "--out", str(out), *extra])


@pytest.fixture(scope="module")
def ran(inputs, tmp_path_factory):
    folder, _ = inputs
    out = tmp_path_factory.mktemp("identify-run") / "out"
    code = run(inputs, out, "--stimuli", f"contrastive={folder / 'contrastive.csv'}", "--random", "2",
               "--architectures", str(folder / "architectures.csv"), "--seed", "3", *FAST)
    return code, out


def test_writes_the_report_and_matches_the_library(ran, inputs):
    code, out = ran
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "identify.csv", "identify.json", "identify_cka.png", "identify_scores.png"]
    assert (out / "identify_cka.png").stat().st_size > 1000 and (out / "identify_scores.png").stat().st_size > 1000
    report = json.loads((out / "identify.json").read_text())
    assert list(report["sets"]) == ["all", "contrastive", "random_0", "random_1"]
    assert report["baseline"] == "random_0" and report["groups"] == ["conv", "vit"]
    assert report["num_bootstrap"] == 20 and report["num_permutations"] == 50 and report["confidence"] == 0.95

    # The same call, made directly: the random draws are the seed's, disjoint from the contrastive set.
    _, features = inputs
    # The set in the file's order: a bootstrap draws positions within the set.
    contrastive = np.loadtxt(inputs[0] / "contrastive.csv", delimiter=",", skiprows=1, usecols=1, dtype=np.int64)
    draws = random_sets(NUM_STIMULI, SIZE, 2, seed=3, exclude=np.arange(SIZE))
    assert {k: v for k, v in report["random_draws"].items()} == {k: v.tolist() for k, v in draws.items()}
    assert not set(draws["random_0"]) & set(range(SIZE))
    sets = {"all": np.arange(NUM_STIMULI), "contrastive": contrastive, **draws}
    direct = compare_stimulus_sets(list(features), FAMILIES, sets, baseline="random_0", num_bootstrap=20,
                                   seed=3, num_permutations=50, architectures=ARCHITECTURES)
    for name, result in direct.sets.items():
        entry = report["sets"][name]
        assert entry["num_stimuli"] == result.num_stimuli
        for field in result.replicates._fields:
            got = entry["scores"][field]
            assert got["value"] == pytest.approx(float(getattr(result.scores, field)), abs=1e-6)
            assert got["low"] == pytest.approx(getattr(result.low, field), abs=1e-6)
            assert got["high"] == pytest.approx(getattr(result.high, field), abs=1e-6)
        assert entry["scores"]["auc"]["p_value"] == pytest.approx(float(result.scores.p_value))
        assert entry["scores"]["architecture_rate"]["value"] == pytest.approx(result.architecture_rate)
        if name == "random_0":
            assert "versus_baseline" not in entry
            continue
        versus, got = direct.versus_baseline[name], entry["versus_baseline"]
        assert got["common_draws"] == versus.common_draws
        for field in versus.difference._fields:
            assert got[field]["difference"] == pytest.approx(float(getattr(versus.difference, field)), abs=1e-6)
            assert got[field]["p_value"] == pytest.approx(getattr(versus.p_value, field))
            assert got[field]["low"] == pytest.approx(getattr(versus.low, field), abs=1e-6)

    # The contrastive set separates the families; a random draw of its size does not.
    scores = report["sets"]["contrastive"]["scores"]
    assert scores["auc"]["value"] > 0.95 and scores["auc"]["value"] > report["sets"]["random_0"]["scores"]["auc"]["high"]
    assert report["sets"]["contrastive"]["versus_baseline"]["auc"]["low"] > 0

    with (out / "identify.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["set", "num_stimuli", "score", "value", "low", "high"]
    assert len(rows) == 4 * 6  # five scores and the architecture rate per set
    auc = {r["set"]: r for r in rows if r["score"] == "auc"}
    assert float(auc["contrastive"]["value"]) == pytest.approx(scores["auc"]["value"], abs=1e-6)
    assert int(auc["contrastive"]["num_stimuli"]) == SIZE


def test_prints_one_line_per_set(inputs, tmp_path, capsys):
    folder, _ = inputs
    code = run(inputs, tmp_path / "out", "--stimuli", f"contrastive={folder / 'contrastive.csv'}",
               "--baseline", "all", "--random", "0", *FAST)
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("all: 120 stimuli, auc ") and lines[1].endswith("(baseline)")
    assert lines[2].startswith(f"contrastive: {SIZE} stimuli, auc ") and "; vs all: auc +" in lines[2]
    assert len(lines) == 3  # no random draws asked for
    assert json.loads((tmp_path / "out" / "identify.json").read_text())["random_draws"] == {}


def test_a_zoo_file_gives_the_families(inputs, tmp_path):
    folder, _ = inputs
    # A python: source is only read, never imported (the module does not exist).
    entries = [f'[[model]]\nname = "{m}"\nfamily = "{"conv" if f == "conv" else "attention"}"\n'
               + ('source = "python:no_such_module_for_identify:build"\n' if i == 0 else
                  f'source = "native:{"convnet" if f == "conv" else "vit"}/tiny"\nseed = {i}\n')
               for i, (m, f) in enumerate(zip(MODELS, FAMILIES))]
    zoo = tmp_path / "zoo.toml"
    zoo.write_text("\n".join(entries))
    code = main(["identify", str(folder / "features.npz"), "--families", str(zoo), "--out", str(tmp_path / "out"),
                 *FAST])
    assert code == 0
    report = json.loads((tmp_path / "out" / "identify.json").read_text())
    assert report["groups"] == ["attention", "conv"] and list(report["sets"]) == ["all"]
    assert report["families"]["m0"] == "conv" and report["families"]["m7"] == "attention"


def bad(inputs, tmp_path, capsys, *extra, families=None):
    folder, _ = inputs
    argv = ["identify", str(folder / "features.npz"), "--families", str(families or folder / "families.csv"),
            "--out", str(tmp_path / "out"), *FAST, *extra]
    code = main(argv)
    assert code == 2 and not (tmp_path / "out").exists()
    return capsys.readouterr().err


def test_a_model_without_a_family(inputs, tmp_path, capsys):
    families = write_table(tmp_path / "families.csv", ["model", "family"], zip(MODELS[:-1], FAMILIES))
    err = bad(inputs, tmp_path, capsys, families=families)
    assert f"{families}: no family for model(s) 'm7'" in err


def test_a_model_without_an_architecture(inputs, tmp_path, capsys):
    path = write_table(tmp_path / "arch.csv", ["model", "architecture"], zip(MODELS[1:], ARCHITECTURES[1:]))
    err = bad(inputs, tmp_path, capsys, "--architectures", str(path))
    assert f"{path}: no architecture for model(s) 'm0'" in err


def test_an_index_out_of_range(inputs, tmp_path, capsys):
    path = tmp_path / "far.csv"
    path.write_text("3\n7\n120\n")
    err = bad(inputs, tmp_path, capsys, "--stimuli", f"far={path}")
    assert f"{path}: stimulus index 120 is outside [0, 120)" in err


def test_a_stimulus_set_without_a_name(inputs, tmp_path, capsys):
    folder, _ = inputs
    with pytest.raises(SystemExit) as exit_:
        main(["identify", str(folder / "features.npz"), "--families", str(folder / "families.csv"),
              "--out", str(tmp_path / "out"), "--stimuli", str(folder / "contrastive.csv")])
    assert exit_.value.code == 2 and not (tmp_path / "out").exists()
    assert "argument --stimuli: expected NAME=FILE" in capsys.readouterr().err


def test_an_unknown_baseline(inputs, tmp_path, capsys):
    folder, _ = inputs
    err = bad(inputs, tmp_path, capsys, "--stimuli", f"contrastive={folder / 'contrastive.csv'}",
              "--baseline", "random_3")
    assert "--baseline 'random_3' is not one of the stimulus sets: all, contrastive, random_0" in err


@pytest.mark.parametrize("extra, message", [
    (["--random", "2"], "--random: draws take the size of the first --stimuli set"),
    (["--stimuli", "all=FILE"], "the name 'all' is taken"),
    (["--stimuli", "random_0=FILE"], "the name 'random_0' is kept for --random draws"),
])
def test_sets_that_cannot_be_made(inputs, tmp_path, capsys, extra, message):
    folder, _ = inputs
    extra = [e.replace("FILE", str(folder / "contrastive.csv")) for e in extra]
    assert message in bad(inputs, tmp_path, capsys, *extra)


def test_random_draws_need_room_beside_the_set(inputs, tmp_path, capsys):
    path = tmp_path / "big.txt"
    path.write_text("\n".join(map(str, range(70))))
    err = bad(inputs, tmp_path, capsys, "--stimuli", f"big={path}")
    assert f"--random: draws of 70 stimuli disjoint from 'big' ({path}) need at least 140 stimuli" in err


def test_features_on_different_stimuli(inputs, tmp_path, capsys):
    folder, features = inputs
    arrays = dict(zip(MODELS, features))
    arrays["m3"] = arrays["m3"][:-1]
    np.savez(tmp_path / "ragged.npz", **arrays)
    code = main(["identify", str(tmp_path / "ragged.npz"), "--families", str(folder / "families.csv"),
                 "--out", str(tmp_path / "out"), *FAST])
    assert code == 2 and not (tmp_path / "out").exists()
    assert "model 'm3' has 119 stimuli but model 'm0' has 120" in capsys.readouterr().err
