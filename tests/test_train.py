"""Training a native zoo (jaxagree.models.train.train_zoo) and restoring it from the zoo file it
writes: the loss falls, restored checkpoints give the trained model's predictions, a second call
reuses finished models, and zoo entries with a missing checkpoint or a bad option say so."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxagree.data import open_stimuli
from jaxagree.models import ModelSpec, load_model, preprocess_images, read_zoo
from jaxagree.models.inventory import model_files
from jaxagree.models.train import TrainSpec, train_zoo

EASY = "synthetic:digits?split=train&n=600&size=16&clutter=0&noise=0&min_scale=0.8&max_scale=1.0&seed=0"
HELDOUT = "synthetic:digits?split=pool&n=200&size=16&clutter=0&noise=0&min_scale=0.8&max_scale=1.0&seed=1"
SMALL = {"image_size": 16, "crop_fraction": 1.0}


def _specs(steps=40):
    conv = ModelSpec("conv-0", "native:convnet/tiny", "conv", {"seed": 0, "architecture": {"widths": [8, 16], **SMALL}},
                     {})
    vits = [ModelSpec(f"vit-{s}", "native:vit/tiny", "attention",
                      {"seed": s, "architecture": {"patch": 4, "dim": 16, "depth": 1, "heads": 2, **SMALL}}, {})
            for s in (0, 1)]
    return [TrainSpec(conv, steps, 3e-3, batch_size=64)] + [TrainSpec(v, steps, 3e-3, batch_size=64) for v in vits]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    results = train_zoo(_specs(), EASY, heldout=HELDOUT, out_dir=out, progress=False)
    return out, results


def test_training_lowers_the_loss_and_writes_a_zoo_file(trained):
    out, results = trained
    assert [r.name for r in results] == ["conv-0", "vit-0", "vit-1"]
    for r in results:
        assert r.final_loss < r.first_loss - 0.05, r
        assert 0 <= r.accuracy <= 1 and r.parameters > 0 and r.num_classes == 10 and not r.reused
        assert (out / "checkpoints" / r.name).is_dir() and (out / "checkpoints" / f"{r.name}.json").is_file()
    assert results[1].parameters == results[2].parameters
    zoo = read_zoo(out / "zoo.toml")
    assert [s.name for s in zoo] == ["conv-0", "vit-0", "vit-1"]
    conv = zoo[0]
    assert conv.options["checkpoint"] == str(out / "checkpoints" / "conv-0")  # resolved against the zoo's folder
    assert conv.options["architecture"] == {"widths": [8, 16], **SMALL} and conv.options["num_classes"] == 10
    assert conv.metadata["steps"] == 40 and conv.metadata["learning_rate"] == 3e-3
    assert conv.metadata["heldout_accuracy"] == pytest.approx(results[0].accuracy, abs=1e-4)
    assert conv.metadata["parameters"] == results[0].parameters and conv.metadata["data_fraction"] == 1.0


def test_restored_checkpoints_predict_as_the_trained_models(trained):
    out, results = trained
    heldout = open_stimuli(HELDOUT)
    for spec, result in zip(read_zoo(out / "zoo.toml"), results):
        loaded = load_model(spec)
        assert loaded.num_classes == 10 and loaded.preprocess.crop_fraction == 1.0
        logits, _ = jax.jit(loaded.forward)(loaded.params, preprocess_images(jnp.asarray(heldout.images),
                                                                              loaded.preprocess))
        accuracy = float((np.asarray(logits).argmax(-1) == heldout.labels).mean())
        # The accuracy train_zoo measured on the trained weights in memory (vmapped for the ViTs).
        assert accuracy == pytest.approx(result.accuracy, abs=1.5 / len(heldout))
        files = model_files(spec)
        assert files and all(str(f).startswith(spec.options["checkpoint"]) for f in files)


def test_a_second_call_reuses_finished_models_and_retrains_changed_or_unfinished_ones(trained, tmp_path):
    out, first = trained
    copy = tmp_path / "zoo"
    shutil.copytree(out, copy)
    before = {r.name: (copy / "checkpoints" / r.name / "_CHECKPOINT_METADATA").stat().st_mtime_ns for r in first}
    again = train_zoo(_specs(), EASY, heldout=HELDOUT, out_dir=copy, progress=False)
    assert all(r.reused for r in again)
    assert [r.accuracy for r in again] == [r.accuracy for r in first]
    assert {r.name: (copy / "checkpoints" / r.name / "_CHECKPOINT_METADATA").stat().st_mtime_ns
            for r in again} == before
    # An interrupted run: a checkpoint without its record is not finished.
    (copy / "checkpoints" / "vit-1.json").unlink()
    # Another budget for the conv net: not the model that was asked for.
    specs = _specs()
    specs[0] = specs[0]._replace(steps=20)
    third = train_zoo(specs, EASY, heldout=HELDOUT, out_dir=copy, progress=False)
    assert [r.reused for r in third] == [False, True, False]
    assert third[0].steps == 20 and json.loads((copy / "checkpoints" / "conv-0.json").read_text())["result"]["steps"] == 20
    assert read_zoo(copy / "zoo.toml")[0].metadata["steps"] == 20
    # The generated zoo file is an input too: its budgets and options name the same models.
    fourth = train_zoo(copy / "zoo.toml", EASY, heldout=HELDOUT, out_dir=copy, progress=False)
    assert all(r.reused for r in fourth) and [r.steps for r in fourth] == [20, 40, 40]


def test_zoo_file_budgets_come_from_metadata(tmp_path):
    zoo = tmp_path / "in.toml"
    zoo.write_text('[[model]]\nname = "c"\nsource = "native:convnet/tiny"\nfamily = "conv"\n'
                   '[model.architecture]\nwidths = [4, 8]\nimage_size = 16\ncrop_fraction = 1.0\n'
                   '[model.metadata]\nsteps = 5\nlearning_rate = 0.01\ndata_fraction = 0.5\nbatch_size = 16\n')
    (result,) = train_zoo(zoo, EASY, out_dir=tmp_path / "out", progress=False)
    assert (result.steps, result.learning_rate, result.data_fraction, result.batch_size) == (5, 0.01, 0.5, 16)
    assert read_zoo(tmp_path / "out" / "zoo.toml")[0].metadata["steps"] == 5


def test_missing_checkpoint_and_bad_options_raise_errors_naming_model_and_option(tmp_path):
    def zoo(lines):
        path = tmp_path / "zoo.toml"
        path.write_text('[[model]]\nname = "m"\nsource = "native:vit/tiny"\nfamily = "attention"\n' + lines)
        return path

    (spec,) = read_zoo(zoo('checkpoint = "nowhere/m"\n'))
    assert spec.options["checkpoint"] == str(tmp_path / "nowhere" / "m")
    for call in (load_model, model_files):
        with pytest.raises(ValueError, match=r"model 'm': checkpoint .*nowhere/m does not exist"):
            call(spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="model 'm': .* is not a finished orbax checkpoint"):
        load_model(read_zoo(zoo('checkpoint = "empty"\n'))[0])
    for lines, message in [
        ("architecture = { patch = 5 }\n", "model 'm': architecture option 'patch' (5) must divide image_size (32)"),
        ("architecture = { widths = [8] }\n",
         "model 'm': unknown architecture option 'widths' for native vit; known: patch, dim, depth, heads"),
        ("architecture = { dim = 0 }\n", "model 'm': architecture option 'dim' must be an integer from 1"),
        ("architecture = { heads = 3 }\n", "model 'm': architecture option 'heads' (3) must divide dim (32)"),
        ("architecture = { crop_fraction = 1.5 }\n",
         "model 'm': architecture option 'crop_fraction' must be a number in (0, 1]"),
        ("architecture = 3\n", "model 'm': option 'architecture' must be a table of architecture options"),
        ("patch = 4\n", "model 'm': unknown option 'patch' for native: sources"),
        ("checkpoint = 3\n", "model 'm': option 'checkpoint' must be a non-empty string"),
    ]:
        with pytest.raises(ValueError) as error:
            read_zoo(zoo(lines))
        assert message in str(error.value)


def test_train_zoo_refuses_what_it_cannot_train(tmp_path):
    hf = ModelSpec("h", "hf:some/model", "attention", {}, {})
    with pytest.raises(ValueError, match="model 'h': only native: models can be trained"):
        train_zoo([hf], EASY, out_dir=tmp_path, progress=False)
    spec = _specs()[0]
    with pytest.raises(ValueError, match="model 'conv-0': data_fraction must be in"):
        train_zoo([spec._replace(data_fraction=0.0)], EASY, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="repeated: \\['conv-0'\\]"):
        train_zoo([spec, spec], EASY, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="training needs a label for every stimulus"):
        train_zoo([spec], "synthetic:squares?n=8&size=16&square=2", out_dir=tmp_path, progress=False)


def test_the_demo_zoo_is_data_three_families_at_several_sizes_and_budgets():
    from jaxagree.models import digits_zoo
    from jaxagree.models.inventory import check_options

    full, quick = digits_zoo(), digits_zoo(quick=True)
    assert len(full) >= 24 and 6 <= len(quick) <= 9
    for zoo in (full, quick):
        assert len({s.model.name for s in zoo}) == len(zoo)
        assert {s.model.family for s in zoo} == {"conv", "attention", "mlp"}
        for spec in zoo:
            check_options(spec.model.source, spec.model.options, spec.model.name)
    assert len({s.steps for s in full}) >= 3 and len({s.data_fraction for s in full}) >= 3
    assert len({json.dumps(s.model.options, sort_keys=True) for s in full if s.model.family == "conv"}) >= 3
