"""The model inventory, the native zoo and extraction: results equal calling the models
directly, on 1 or 4 devices, cached and resumable (also after SIGKILL)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxagree.cli import main
from jaxagree.io import read_features, read_predictions
from jaxagree.models import VARIANTS, build_native, load_model, read_zoo
from jaxagree.pipeline import extract, preprocess_images
from jaxagree.sharding import pad_rows, stimulus_mesh
from tests.zoo_helpers import native_entry, tiny_hf_checkpoint, zoo_toml

ROOT = Path(__file__).resolve().parents[1]

ZOO_MODELS = (
    native_entry("conv-a", "convnet", num_classes=10, seed=1),
    {"name": "vit-a", "source": "python:tests.zoo_helpers:tiny_vit", "family": "attention", "seed": 2},
    native_entry("mixer-a", "mixer", num_classes=10, metadata={"release": "2021"}),
)
ZOO = zoo_toml(*ZOO_MODELS)


@pytest.fixture
def zoo_file(tmp_path):
    path = tmp_path / "zoo.toml"
    path.write_text(ZOO)
    return path


@pytest.fixture(scope="module")
def images():
    # Not square and not the models' size: exercises resize and centre crop.
    return np.random.default_rng(0).integers(0, 256, (37, 40, 48, 3), dtype=np.uint8)


def direct(spec, images):
    """Call the model as a user would, without the engine: one batch, no padding, no sharding."""
    loaded = load_model(spec)
    model = nnx.merge(loaded.forward.graphdef, loaded.params)
    logits, layers = model(preprocess_images(jnp.asarray(images), loaded.preprocess))
    return np.asarray(jnp.argmax(logits, -1)), {name: np.asarray(f) for name, f in layers.items()}


def test_read_zoo(zoo_file):
    zoo = read_zoo(zoo_file, trust_code=True)
    assert [s.name for s in zoo] == ["conv-a", "vit-a", "mixer-a"]
    assert [s.family for s in zoo] == ["conv", "attention", "mlp"]
    assert zoo[0].options == {"num_classes": 10, "seed": 1}
    assert zoo[2].metadata == {"release": "2021"}


@pytest.mark.parametrize(
    "entry, match",
    [
        ('name = "a"\nsource = "native:vit/tiny"\nfamily = "cnn"', "unknown family 'cnn'; known: conv, attention"),
        ('name = "a"\nsource = "native:vit/huge"\nfamily = "attention"', "unknown variant 'huge' of vit; known: tiny"),
        ('name = "a"\nsource = "native:resnet/tiny"\nfamily = "conv"', "unknown native architecture 'resnet'"),
        ('name = "a"\nsource = "hf:"\nfamily = "attention"', "an hf source is 'hf:HUB_ID' or 'hf:FOLDER'"),
        ('name = "a"\nsource = "timm:vit"\nfamily = "attention"', "unknown source 'timm:vit'"),
        ('name = "a"\nsource = "python:nomodule"\nfamily = "attention"', "python:MODULE:FUNCTION"),
        ('name = "a/b"\nsource = "native:vit/tiny"\nfamily = "attention"', "names may hold only"),
        ('source = "native:vit/tiny"\nfamily = "attention"', "model 1: needs a string 'name'"),
    ],
)
def test_read_zoo_bad_entries_name_the_model(tmp_path, entry, match):
    path = tmp_path / "zoo.toml"
    path.write_text(f"[[model]]\n{entry}\n")
    with pytest.raises(ValueError, match=match):
        read_zoo(path)


def test_read_zoo_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such zoo file"):
        read_zoo(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[model]\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        read_zoo(tmp_path / "bad.toml")
    (tmp_path / "empty.toml").write_text("title = 'x'\n")
    with pytest.raises(ValueError, match=r"no \[\[model\]\] entries"):
        read_zoo(tmp_path / "empty.toml")
    (tmp_path / "twice.toml").write_text('[[model]]\nname = "a"\nsource = "native:vit/tiny"\nfamily = "attention"\n' * 2)
    with pytest.raises(ValueError, match="'a': the name is used twice"):
        read_zoo(tmp_path / "twice.toml")


def test_load_model_bad_sources(tmp_path):
    from jaxagree.models import ModelSpec

    with pytest.raises(ValueError, match="unknown option"):
        load_model(ModelSpec("a", "native:vit/tiny", "attention", {"depth": 3}, {}))
    with pytest.raises(ValueError, match="cannot import"):
        load_model(ModelSpec("a", "python:tests.zoo_helpers:missing", "attention", {}, {}))
    with pytest.raises(ValueError, match=r"must return \(flax.nnx.Module, Preprocess\)"):
        load_model(ModelSpec("a", "python:tests.zoo_helpers:not_a_model", "attention", {}, {}))


@pytest.mark.parametrize("architecture", list(VARIANTS))
def test_native_tiny_variants_map_images_to_logits_and_features(architecture):
    model, preprocess = build_native(architecture, "tiny", num_classes=7, seed=3)
    logits, layers = model(jnp.zeros((2, preprocess.size, preprocess.size, 3)))
    assert logits.shape == (2, 7) and list(layers)[-1] == "penultimate" and len(layers) >= 3
    assert all(f.ndim == 2 and f.shape[0] == 2 for f in layers.values())
    again, _ = build_native(architecture, "tiny", num_classes=7, seed=3)
    np.testing.assert_array_equal(nnx.state(model, nnx.Param)["head"]["kernel"][...],
                                  nnx.state(again, nnx.Param)["head"]["kernel"][...])


def test_extract_equals_calling_each_model_directly(zoo_file, images, tmp_path):
    zoo = read_zoo(zoo_file, trust_code=True)
    result = extract(zoo, images, cache_dir=tmp_path / "cache", batch_size=16, progress=False)
    assert result.models == ["conv-a", "vit-a", "mixer-a"] and result.predictions.shape == (3, 37)
    assert result.num_classes == [10, 10, 10]
    for m, spec in enumerate(zoo):
        top1, layers = direct(spec, images)
        np.testing.assert_array_equal(result.predictions[m], top1)
        np.testing.assert_allclose(result.features["penultimate"][m], layers["penultimate"], atol=2e-5)
        assert result.images_per_second[spec.name] > 0


def test_four_devices_equal_one(zoo_file, images, tmp_path, devices):
    zoo = read_zoo(zoo_file, trust_code=True)
    one = extract(zoo, images, cache_dir=tmp_path / "one", batch_size=12, mesh=stimulus_mesh(devices[:1]),
                  progress=False)
    four = extract(zoo, images, cache_dir=tmp_path / "four", batch_size=12, mesh=stimulus_mesh(devices),
                   progress=False)
    np.testing.assert_array_equal(four.predictions, one.predictions)
    for a, b in zip(four.features["penultimate"], one.features["penultimate"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_extract_splits_batches_over_the_stimulus_mesh_by_default(images, tmp_path):
    from jaxagree.models import ModelSpec
    from jaxagree.pipeline.runner import runner

    spec = ModelSpec("a", "native:convnet/tiny", "conv", {"num_classes": 10}, {})
    extract([spec], images, cache_dir=tmp_path, batch_size=16, progress=False)
    loaded, before = load_model(spec), runner.cache_info()
    runner(loaded.forward, loaded.preprocess, ("penultimate",), stimulus_mesh(jax.local_devices()), None)
    assert runner.cache_info().hits == before.hits + 1  # compiled for that mesh by the run above


def test_pad_rows_pads_a_ragged_batch_to_the_compiled_shape():
    batch = np.arange(1, 7, dtype=np.uint8).reshape(2, 3)
    padded = pad_rows(batch, 4)
    assert padded.valid == 2 and padded.rows.shape == (4, 3) and padded.rows.dtype == np.uint8
    np.testing.assert_array_equal(padded.rows[:2], batch)
    assert not padded.rows[2:].any()
    full = pad_rows(batch, 2)
    assert full.rows is batch and full.valid == 2  # a full batch is not copied
    with pytest.raises(ValueError, match="a batch of 3 rows does not fit in 2"):
        pad_rows(np.zeros((3, 1)), 2)


def test_rerun_uses_the_cache_and_recomputes_a_corrupt_entry(zoo_file, images, tmp_path, monkeypatch):
    import jaxagree.pipeline.loop as loop

    zoo = read_zoo(zoo_file, trust_code=True)
    first = extract(zoo, images, cache_dir=tmp_path, batch_size=16, progress=False)
    loads = []
    monkeypatch.setattr(loop, "load_model", lambda spec: loads.append(spec.name) or load_model(spec))
    again = extract(zoo, images, cache_dir=tmp_path, batch_size=16, progress=False)
    assert loads == [] and set(again.images_per_second.values()) == {None}
    np.testing.assert_array_equal(again.predictions, first.predictions)
    # Truncate one model's features: detected by its checksum, recomputed with a warning.
    entry = next(tmp_path.glob("*/vit-a"))
    data = (entry / "features-penultimate.npy").read_bytes()
    (entry / "features-penultimate.npy").write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="vit-a.*does not match its checksum"):
        repaired = extract(zoo, images, cache_dir=tmp_path, batch_size=16, progress=False)
    assert loads == ["vit-a"]
    np.testing.assert_array_equal(repaired.features["penultimate"][1], first.features["penultimate"][1])
    # A model whose options change is not served from the old entry.
    changed = [spec._replace(options={**spec.options, "seed": 9}) if spec.name == "conv-a" else spec for spec in zoo]
    with pytest.warns(RuntimeWarning, match="conv-a.*the model's options changed"):
        extract(changed, images, cache_dir=tmp_path, batch_size=16, progress=False)
    assert loads == ["vit-a", "conv-a"]


def test_killed_run_resumes_with_identical_results(tmp_path, images):
    """SIGKILL while loading the second model; the rerun keeps the first model's entry and
    produces what an uninterrupted run produces."""
    zoo = tmp_path / "zoo.toml"
    killed = {"name": "mixer-a", "source": "python:tests.zoo_helpers:killed_on_request", "family": "mlp",
              "metadata": {"release": "2021"}}
    zoo.write_text(zoo_toml(*ZOO_MODELS[:2], killed))
    np.savez(tmp_path / "images.npz", images=images)
    env = {**os.environ, "JAXAGREE_TEST_KILL": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "jaxagree.cli", "extract", "--trust-code", "--zoo", str(zoo), "--stimuli",
               f"npz:{tmp_path / 'images.npz'}", "--out", str(tmp_path / "out"), "--batch-size", "16", "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stderr
    finished = sorted(p.parent.name for p in (tmp_path / "out" / "cache").glob("*/*/entry.json"))
    assert finished == ["conv-a", "vit-a"]
    leftovers = list((tmp_path / "out" / "cache").glob("**/*.tmp"))
    assert leftovers == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the finished entries are used as they are
        resumed = extract(read_zoo(zoo, trust_code=True), images, cache_dir=tmp_path / "out" / "cache", batch_size=16, progress=False)
    assert resumed.images_per_second["conv-a"] is None and resumed.images_per_second["vit-a"] is None
    clean = extract(read_zoo(zoo, trust_code=True), images, cache_dir=tmp_path / "clean", batch_size=16, progress=False)
    np.testing.assert_array_equal(resumed.predictions, clean.predictions)
    for a, b in zip(resumed.features["penultimate"], clean.features["penultimate"]):
        np.testing.assert_array_equal(a, b)


def test_cli_extract_writes_what_agreement_and_cka_read(zoo_file, images, tmp_path, capsys):
    labels = np.random.default_rng(2).integers(0, 10, images.shape[0])
    np.savez(tmp_path / "images.npz", images=images, labels=labels, ids=np.array([f"img{i}" for i in range(37)]))
    out = tmp_path / "out"
    code = main(["extract", "--trust-code", "--zoo", str(zoo_file), "--stimuli", f"npz:{tmp_path / 'images.npz'}", "--out", str(out),
                 "--batch-size", "16", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "conv-a:" in printed and "images/s" in printed
    table = read_predictions(out / "predictions.npz")
    assert table.models == ["conv-a", "vit-a", "mixer-a"] and table.stimuli[:2] == ["img0", "img1"]
    np.testing.assert_array_equal(table.labels, labels)
    features = read_features(out / "features" / "penultimate")
    assert sorted(features.models) == ["conv-a", "mixer-a", "vit-a"]
    assert main(["agreement", str(out / "predictions.npz"), "--out", str(tmp_path / "agree"), "--k", "5"]) == 0
    assert main(["cka", str(out / "features" / "penultimate"), "--out", str(tmp_path / "cka")]) == 0
    assert (tmp_path / "agree" / "summary.json").exists() and (tmp_path / "cka" / "cka.csv").exists()
    main(["extract", "--trust-code", "--zoo", str(zoo_file), "--stimuli", str(tmp_path / "images.npz"), "--out", str(out),
          "--no-progress"])
    assert capsys.readouterr().out.count("cached") == 3


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((4, 8, 8), np.uint8), r"uint8 \[stimuli, height, width, 3\]"),
        (np.zeros((4, 8, 8, 3), np.float32), r"uint8 \[stimuli, height, width, 3\]"),
    ],
)
def test_cli_extract_bad_images(zoo_file, tmp_path, capsys, array, match):
    np.save(tmp_path / "images.npy", array)
    code = main(["extract", "--trust-code", "--zoo", str(zoo_file), "--stimuli", str(tmp_path / "images.npy"), "--out",
                 str(tmp_path / "out"), "--no-progress"])
    assert code != 0
    assert "uint8 [stimuli, height, width, 3]" in capsys.readouterr().err


def test_extract_bad_arguments(zoo_file, tmp_path):
    zoo = read_zoo(zoo_file, trust_code=True)
    with pytest.raises(ValueError, match="images must be uint8"):
        extract(zoo, np.zeros((2, 8, 8, 3), np.float32), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        extract(zoo, np.zeros((2, 8, 8, 3), np.uint8), cache_dir=tmp_path, batch_size=0)


# --- Hugging Face Flax checkpoints -------------------------------------------------------------


def _tiny_hf_checkpoints(folder: Path) -> dict[str, str]:
    """Random-init tiny HF Flax models saved as local checkpoints: {name: task}."""
    from transformers import ConvNextImageProcessor

    tasks = {}
    for name in ("vit", "beit", "resnet", "regnet", "dinov2", "clip"):
        tasks[name] = tiny_hf_checkpoint(folder / name, name, seed=len(tasks))
    # Conv nets have no image_size in their config: they get a processor config, as on the hub
    # (ResNet and RegNet use ConvNeXt's: shortest edge to int(32 / 0.875) = 36, centre crop 32).
    for name in ("resnet", "regnet"):
        ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875, resample=3, image_mean=[0.5] * 3,
                               image_std=[0.25] * 3).save_pretrained(folder / name)
    return tasks


@pytest.fixture(scope="module")
def hf_zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    tasks = _tiny_hf_checkpoints(folder)
    lines = []
    for name, task in tasks.items():
        family = "conv" if name in ("resnet", "regnet") else "attention"
        lines.append(f'[[model]]\nname = "hf-{name}"\nsource = "hf:{folder / name}"\nfamily = "{family}"\n'
                     f'task = "{task}"\n')
    (folder / "zoo.toml").write_text("\n".join(lines))
    return read_zoo(folder / "zoo.toml"), folder


def test_hf_checkpoints_through_the_inventory_equal_calling_them_directly(hf_zoo, images, tmp_path):
    import transformers as tf

    zoo, folder = hf_zoo
    result = extract(zoo, images, cache_dir=tmp_path, batch_size=16, progress=False)
    for m, spec in enumerate(zoo):
        loaded = load_model(spec)
        pixels = jnp.transpose(preprocess_images(jnp.asarray(images), loaded.preprocess), (0, 3, 1, 2))
        if spec.options["task"] == "features":
            model, params = tf.FlaxCLIPVisionModel.from_pretrained(folder / "clip", _do_init=False)
            np.testing.assert_allclose(result.features["penultimate"][m],
                                       np.asarray(model(pixels, params=params).pooler_output), atol=2e-5)
            assert (result.predictions[m] == -1).all() and result.num_classes[m] == 0
            continue
        # HF's own loading and call, without its eager random initialisation (op by op, slow).
        model, params = tf.FlaxAutoModelForImageClassification.from_pretrained(spec.source[3:], _do_init=False)
        output = model(pixels, params=params, output_hidden_states=True)
        logits = np.asarray(output.logits)
        np.testing.assert_array_equal(result.predictions[m], logits.argmax(-1))
        # The features are exactly what the classification head receives.
        head = jax.tree.leaves(params.get("params", params)["classifier"])
        kernel, bias = (h for h in sorted(head, key=lambda h: -h.ndim))
        penultimate = result.features["penultimate"][m]
        np.testing.assert_allclose(penultimate @ np.asarray(kernel) + np.asarray(bias), logits, atol=1e-4)
        # Hidden states are offered as pooled layers too, and match HF's own.
        assert loaded.layers[:-1] == tuple(f"hidden_states.{i}" for i in range(len(output.hidden_states)))
    # Preprocessing from the processor config (conv nets) or the model config (ViT).
    assert load_model(zoo[2]).preprocess.size == 32 and load_model(zoo[2]).preprocess.mean == (0.5, 0.5, 0.5)
    assert load_model(zoo[0]).preprocess.size == 32


def test_hf_missing_checkpoint_says_how_to_use_a_local_folder(tmp_path, monkeypatch):
    from jaxagree.models import ModelSpec

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never touch the network in tests
    with pytest.raises(ValueError, match="hub cannot be reached.*save_pretrained"):
        load_model(ModelSpec("a", "hf:nobody/no-such-model", "attention", {}, {}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no loadable Flax checkpoint"):
        load_model(ModelSpec("a", f"hf:{tmp_path / 'empty'}", "attention", {}, {}))
    with pytest.raises(ValueError, match="option 'task' must be 'classification' or"):
        load_model(ModelSpec("a", f"hf:{tmp_path / 'empty'}", "attention", {"task": "segmentation"}, {}))


def test_an_hf_backbone_loaded_as_a_classifier_is_refused_not_given_a_random_head(tmp_path):
    import transformers as tf

    from jaxagree.models import ModelSpec

    config = tf.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32)
    tf.FlaxViTModel(config, seed=0).save_pretrained(tmp_path / "backbone")
    spec = ModelSpec("bare", f"hf:{tmp_path / 'backbone'}", "attention", {}, {})
    with pytest.raises(ValueError, match=r"model 'bare'.*lacks weights.*classifier/kernel.*task = \"features\""):
        load_model(spec)
    assert load_model(spec._replace(options={"task": "features"})).layers  # the same folder as a backbone


def test_an_hf_pytorch_checkpoint_converts_with_from_pt(tmp_path):
    """from_pt needs HF's own initialisation (its conversion reads it); torch is not a test
    dependency, so this runs where a developer has it (checked with torch 2.13.0)."""
    torch = pytest.importorskip("torch")
    import transformers as tf

    from jaxagree.models import ModelSpec

    config = tf.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, num_labels=5)
    torch.manual_seed(0)
    reference = tf.ViTForImageClassification(config).eval()
    reference.save_pretrained(tmp_path / "pt")
    model = load_model(ModelSpec("pt", f"hf:{tmp_path / 'pt'}", "attention", {"from_pt": True}, {}))
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    pixels = preprocess_images(jnp.asarray(images), model.preprocess)
    logits, _ = model.forward(model.params, pixels)
    with torch.no_grad():
        expected = reference(torch.from_numpy(np.asarray(pixels).transpose(0, 3, 1, 2).copy())).logits.numpy()
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-5)


def test_models_of_one_architecture_share_a_compiled_forward():
    from jaxagree.models import ModelSpec

    first = load_model(ModelSpec("a", "native:convnet/tiny", "conv", {"seed": 1}, {}))
    second = load_model(ModelSpec("b", "native:convnet/tiny", "conv", {"seed": 2}, {}))
    other = load_model(ModelSpec("c", "native:vit/tiny", "attention", {}, {}))
    assert first.forward == second.forward and hash(first.forward) == hash(second.forward)
    assert first.forward != other.forward


def test_shipped_tiny_zoo_reads_and_builds():
    zoo = read_zoo(ROOT / "zoos" / "tiny.toml")
    assert len(zoo) == 6 and {s.family for s in zoo} == {"conv", "attention", "mlp"}
    assert all(load_model(spec).num_classes == 10 for spec in zoo)


def test_hf_checkpoints_of_one_architecture_share_a_compiled_forward(hf_zoo):
    zoo, _ = hf_zoo
    assert load_model(zoo[0]).forward == load_model(zoo[0]).forward
    assert hash(load_model(zoo[0]).forward) == hash(load_model(zoo[0]).forward)
    assert load_model(zoo[0]).forward != load_model(zoo[1]).forward


def test_named_layers_match_the_model_and_are_added_to_cached_entries(zoo_file, images, tmp_path, monkeypatch):
    import jaxagree.pipeline.loop as loop

    zoo = read_zoo(zoo_file, trust_code=True)
    vit = [spec for spec in zoo if spec.name == "vit-a"]
    first = extract(vit, images, cache_dir=tmp_path, batch_size=16, progress=False)
    loads = []
    monkeypatch.setattr(loop, "load_model", lambda spec: loads.append(spec.name) or load_model(spec))
    both = extract(vit, images, cache_dir=tmp_path, layers=["block1", "penultimate"], batch_size=16, progress=False)
    assert loads == ["vit-a"]  # the cached entry lacked block1: the model ran again
    _, layers = direct(vit[0], images)
    np.testing.assert_allclose(both.features["block1"][0], layers["block1"], atol=2e-5)
    np.testing.assert_array_equal(both.features["penultimate"][0], first.features["penultimate"][0])
    extract(vit, images, cache_dir=tmp_path, layers=["block1"], batch_size=16, progress=False)
    assert loads == ["vit-a"]  # now both layers are cached
    with pytest.raises(ValueError, match="model 'vit-a' has no layer\\(s\\) 'block9'; its layers: block1, block2, "
                                         "penultimate"):
        extract(vit, images, cache_dir=tmp_path, layers=["block9"], batch_size=16, progress=False)


def test_cli_extract_layers(zoo_file, images, tmp_path, capsys):
    np.savez(tmp_path / "images.npz", images=images)
    out = tmp_path / "out"
    code = main(["extract", "--trust-code", "--zoo", str(zoo_file), "--stimuli", str(tmp_path / "images.npz"), "--out", str(out),
                 "--batch-size", "16", "--no-progress", "--layers", "penultimate"])
    assert code == 0 and sorted(p.name for p in (out / "features").iterdir()) == ["penultimate"]
    code = main(["extract", "--trust-code", "--zoo", str(zoo_file), "--stimuli", str(tmp_path / "images.npz"), "--out", str(out),
                 "--no-progress", "--layers", "stage1"])
    # conv-a has a stage1; vit-a does not, and the message lists what it has.
    assert code != 0
    assert "model 'vit-a' has no layer(s) 'stage1'; its layers: block1, block2, penultimate" in capsys.readouterr().err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(zoo_file, images, tmp_path, devices):
    """jax.distributed on localhost (CPU collectives over gloo): models split across 2
    processes, outputs written by process 0, the same as one process (here, in this process on
    one device: a third interpreter would only start jax again)."""
    np.savez(tmp_path / "images.npz", images=images)
    base = [sys.executable, "-m", "jaxagree.cli", "extract", "--trust-code", "--zoo", str(zoo_file), "--stimuli",
            str(tmp_path / "images.npz"), "--batch-size", "16", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = _free_port()
    workers = [
        subprocess.Popen([*base, "--out", str(tmp_path / "two"), "--distributed"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={**env, "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2",
                              "JAX_PROCESS_ID": str(i)})
        for i in range(2)
    ]
    one = extract(read_zoo(zoo_file, trust_code=True), images, cache_dir=tmp_path / "one", batch_size=16,
                  mesh=stimulus_mesh(devices[:1]), progress=False)
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    # Process 0 ran models 0 and 2, process 1 model 1; only process 0 wrote the outputs.
    assert "vit-a: cached" in outputs[0][0] and "images/s" in outputs[0][0] and "conv-a: cached" not in outputs[0][0]
    assert "images/s" not in outputs[1][0] and not (tmp_path / "two" / "predictions.npz.tmp").exists()
    two = read_predictions(tmp_path / "two" / "predictions.npz")
    assert two.models == list(one.models)
    np.testing.assert_array_equal(two.predictions, one.predictions)
    for name, expected in zip(one.models, one.features["penultimate"]):
        np.testing.assert_allclose(np.load(tmp_path / "two" / "features" / "penultimate" / f"{name}.npy"),
                                   expected, rtol=0, atol=1e-5)  # as four devices against one


def test_curated_imagenet_zoo_reads():
    """The curated hub zoo parses (its checkpoints are not downloaded in tests)."""
    zoo = read_zoo(ROOT / "zoos" / "imagenet.toml")
    assert {s.family for s in zoo} == {"conv", "attention"} and all(s.source.startswith("hf:") for s in zoo)
    assert all("params_m" in s.metadata for s in zoo)
