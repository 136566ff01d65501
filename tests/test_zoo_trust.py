"""Trust in zoo files and in the extraction cache (issue 10): python: sources only with an
explicit opt-in, every entry's options checked before the first model runs, runs that share a
cache kept apart by per-model locks, and cache entries keyed on what determines a model's
outputs (checkpoint files, preprocessing code), not on its source string alone."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from jaxagree.cli import main
from jaxagree.data.sources import ArrayStimuli
from jaxagree.io import read_predictions
from jaxagree.models import ModelSpec, load_model, read_zoo
from jaxagree.models.huggingface import checkpoint_files
from jaxagree.pipeline import extract
from jaxagree.pipeline.cache import locked
from jaxagree.pipeline.keys import code_digest, code_sources, digest_files

ROOT = Path(__file__).resolve().parents[1]
NATIVE = 'name = "a"\nsource = "native:convnet/tiny"\nfamily = "conv"\n'
HF = 'name = "a"\nsource = "hf:some/model"\nfamily = "attention"\n'


def _images(count=6, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


# --- python: sources need an explicit opt-in ------------------------------------------------------


def _shell_zoo(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(f'[[model]]\n{NATIVE}num_classes = 10\n\n'
                   f'[[model]]\nname = "shell"\nsource = "python:os:system"\nfamily = "conv"\n'
                   f'command = "touch {marker}"\n')
    return zoo, marker


def test_read_zoo_refuses_python_sources_without_trust_code(tmp_path):
    zoo, marker = _shell_zoo(tmp_path)
    with pytest.raises(ValueError, match=r"zoo.toml: model 'shell': source 'python:os:system' imports and runs "
                                         r"Python code .* --trust-code \(Python: read_zoo\(\.\.\., trust_code=True\)\)"):
        read_zoo(zoo)
    assert not marker.exists()
    assert [s.name for s in read_zoo(zoo, trust_code=True)] == ["a", "shell"]  # refused, not broken
    assert not marker.exists()  # reading runs nothing, trusted or not


def test_cli_extract_refuses_a_zoo_with_code_before_any_model_runs(tmp_path, capsys):
    zoo, marker = _shell_zoo(tmp_path)
    np.savez(tmp_path / "images.npz", images=_images())
    code = main(["extract", "--zoo", str(zoo), "--stimuli", str(tmp_path / "images.npz"), "--out",
                 str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "model 'shell': source 'python:os:system' imports and runs Python code" in err and "--trust-code" in err
    assert not marker.exists()  # the command never ran
    assert not (tmp_path / "out" / "cache").exists()  # nor did the native model before it


# --- options, names: checked when the zoo is read ---------------------------------------------------


_CLASSES = "option 'num_classes' must be an integer from 1 to 1,000,000, got"
_SEED = "option 'seed' must be an integer from 0 to 4294967295, got"


@pytest.mark.parametrize(
    "entry, message",
    [
        (NATIVE + 'num_classes = "ten"', f"model 'a': {_CLASSES} 'ten'"),
        (NATIVE + "num_classes = -3", f"model 'a': {_CLASSES} -3"),
        (NATIVE + "num_classes = 0", f"model 'a': {_CLASSES} 0"),
        (NATIVE + "num_classes = 10.0", f"model 'a': {_CLASSES} 10.0"),
        (NATIVE + "num_classes = true", f"model 'a': {_CLASSES} True"),
        (NATIVE + "num_classes = 10000000000", f"model 'a': {_CLASSES} 10000000000"),
        (NATIVE + "seed = -1", f"model 'a': {_SEED} -1"),
        (NATIVE + "seed = 4294967296", f"model 'a': {_SEED} 4294967296"),
        (NATIVE + 'seed = "1"', f"model 'a': {_SEED} '1'"),
        (NATIVE + "depth = 3", "model 'a': unknown option 'depth' for native: sources; known: seed, num_classes, checkpoint, architecture"),
        (HF + 'task = "segmentation"',
         "model 'a': option 'task' must be 'classification' or 'features', got 'segmentation'"),
        (HF + 'from_pt = "yes"', "model 'a': option 'from_pt' must be true or false, got 'yes'"),
        (HF + 'revision = ""', "model 'a': option 'revision' must be a non-empty string (a branch, tag or commit), got ''"),
        (HF + "revision = 3", "model 'a': option 'revision' must be a non-empty string (a branch, tag or commit), got 3"),
        (HF + 'dtype = "bfloat16"', "model 'a': unknown option 'dtype' for hf: sources; known: task, from_pt, revision"),
        (f'name = "{"m" * 300}"\nsource = "native:convnet/tiny"\nfamily = "conv"',
         f"model 2: the name has 300 characters; at most 128 (names become file names): '{'m' * 40}'..."),
    ],
    ids=["classes-text", "classes-negative", "classes-zero", "classes-float", "classes-bool", "classes-huge",
         "seed-negative", "seed-too-large", "seed-text", "native-unknown", "hf-task", "hf-from-pt",
         "hf-revision-empty", "hf-revision-int", "hf-unknown", "name-too-long"],
)
def test_read_zoo_checks_options_and_names(tmp_path, entry, message):
    path = tmp_path / "zoo.toml"
    # The bad entry comes second: the whole zoo is refused, naming the file, the model and the option.
    path.write_text(f'[[model]]\nname = "good"\nsource = "native:vit/tiny"\nfamily = "attention"\n\n'
                    f"[[model]]\n{entry}\n")
    with pytest.raises(ValueError) as refused:
        read_zoo(path)
    assert str(refused.value) == f"{path}: {message}"


def test_read_zoo_accepts_the_bounds(tmp_path):
    path = tmp_path / "zoo.toml"
    path.write_text(f'[[model]]\n{NATIVE}num_classes = 1\nseed = 4294967295\n\n'
                    f'[[model]]\nname = "{"m" * 128}"\nsource = "hf:x/y"\nfamily = "conv"\n'
                    'task = "features"\nfrom_pt = false\nrevision = "main"\n\n'
                    '[[model]]\nname = "p"\nsource = "python:tests.zoo_helpers:tiny_vit"\nfamily = "attention"\n'
                    'anything = "goes to the function"\n')
    zoo = read_zoo(path, trust_code=True)
    assert zoo[0].options == {"num_classes": 1, "seed": 4294967295} and len(zoo[1].name) == 128


def test_load_model_checks_options_of_a_spec_built_in_python():
    with pytest.raises(ValueError, match="^model 'a': option 'num_classes' must be an integer from 1 to 1,000,000, "
                                         "got 'ten'$"):
        load_model(ModelSpec("a", "native:convnet/tiny", "conv", {"num_classes": "ten"}, {}))


def test_cli_extract_bad_option_fails_before_the_first_model(tmp_path, capsys):
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[model]]\nname = "first"\nsource = "native:convnet/tiny"\nfamily = "conv"\n\n'
                   f'[[model]]\n{NATIVE}num_classes = "ten"\n')
    np.savez(tmp_path / "images.npz", images=_images())
    code = main(["extract", "--zoo", str(zoo), "--stimuli", str(tmp_path / "images.npz"), "--out",
                 str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"jaxagree extract: error: {zoo}: model 'a': option 'num_classes' must be an integer from 1 to 1,000,000, "
        "got 'ten'"]
    assert not (tmp_path / "out" / "cache").exists()


# --- concurrent runs on one cache ------------------------------------------------------------------


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_two_extracts_on_one_out_wait_for_each_other(tmp_path):
    """Run A holds model 'gate' (its loading waits for a file); run B, started on the same --out,
    does the other model, waits on gate's lock (saying so), then takes gate from the cache."""
    started, go = tmp_path / "started", tmp_path / "go"
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(f'[[model]]\nname = "gate"\nsource = "python:tests.zoo_helpers:gated"\nfamily = "conv"\n'
                   f'started = "{started}"\ngo = "{go}"\n\n'
                   '[[model]]\nname = "other"\nsource = "native:mixer/tiny"\nfamily = "mlp"\nnum_classes = 10\n')
    np.savez(tmp_path / "images.npz", images=_images(8))
    command = [sys.executable, "-m", "jaxagree.cli", "extract", "--trust-code", "--zoo", str(zoo), "--stimuli",
               str(tmp_path / "images.npz"), "--out", str(tmp_path / "out"), "--batch-size", "4", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = []
    try:
        for name in ("a", "b"):
            with (tmp_path / f"{name}.out").open("w") as out, (tmp_path / f"{name}.err").open("w") as err:
                runs.append(subprocess.Popen(command, stdout=out, stderr=err, env=env))
            if name == "a":
                _wait_for(lambda: started.exists() or runs[0].poll() is not None, "run A to start loading 'gate'")
                assert runs[0].poll() is None, (tmp_path / "a.err").read_text()
        b_err = tmp_path / "b.err"
        _wait_for(lambda: "waiting for" in b_err.read_text() or runs[1].poll() is not None,
                  "run B to wait for gate's lock")
        assert runs[1].poll() is None, b_err.read_text()
        go.touch()
        codes = [run.wait(timeout=300) for run in runs]
    finally:
        go.touch()
        for run in runs:
            if run.poll() is None:
                run.kill()
    outputs = {name: ((tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text())
               for name in ("a", "b")}
    assert codes == [0, 0], outputs
    lock = next((tmp_path / "out" / "cache").glob("*/gate/.lock"))
    assert f"model 'gate': waiting for {lock}, held by another jaxagree run on this cache" in outputs["b"][1]
    assert "gate: cached" in outputs["b"][0] and "other: " in outputs["b"][0]
    assert "gate: cached" not in outputs["a"][0]
    table = read_predictions(tmp_path / "out" / "predictions.npz")
    assert table.models == ["gate", "other"] and table.predictions.shape == (2, 8)


def test_a_killed_run_leaves_no_lock_behind(tmp_path):
    """The kernel releases a flock when its process dies: a lock held by a run that is killed
    (SIGKILL: no clean-up) does not block the next run."""
    images = _images(4)
    set_dir = tmp_path / "cache" / ArrayStimuli(images).fingerprint()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from jaxagree.pipeline.cache import locked\n"
         "with locked(Path(sys.argv[1]), 'a', wait=True):\n    print('held', flush=True); time.sleep(600)",
         str(set_dir / "a")], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with locked(set_dir / "a", "a", wait=False) as held:
            assert not held  # the lock is real while its holder lives
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no waiting
        result = extract([ModelSpec("a", "native:convnet/tiny", "conv", {"num_classes": 10}, {})], images,
                         cache_dir=tmp_path / "cache", batch_size=4, progress=False)
    assert result.images_per_second["a"] is not None and (set_dir / "a" / "entry.json").exists()


# --- cache keys: what determines a model's outputs ---------------------------------------------------


def _save_tiny_vit(folder: Path, seed: int) -> None:
    import transformers as tf

    config = tf.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, num_labels=10)
    tf.FlaxViTForImageClassification(config, seed=seed).save_pretrained(folder)


def _hf_spec(folder: Path) -> ModelSpec:
    return ModelSpec("vit", f"hf:{folder}", "attention", {}, {})


def _direct_penultimate(spec: ModelSpec, images) -> np.ndarray:
    import jax.numpy as jnp

    from jaxagree.pipeline import preprocess_images

    loaded = load_model(spec)
    return np.asarray(loaded.forward(loaded.params, preprocess_images(jnp.asarray(images), loaded.preprocess))[1][
        "penultimate"])


def test_an_hf_checkpoint_saved_again_is_not_served_from_the_cache(tmp_path):
    images, folder = _images(), tmp_path / "vit"
    _save_tiny_vit(folder, seed=0)
    spec = _hf_spec(folder)
    first = extract([spec], images, cache_dir=tmp_path / "cache", batch_size=8, progress=False)
    _save_tiny_vit(folder, seed=1)  # retrained, saved to the same folder
    with pytest.warns(RuntimeWarning, match=r"\(the model's files changed \(flax_model.msgpack\)\); recomputing model 'vit'"):
        second = extract([spec], images, cache_dir=tmp_path / "cache", batch_size=8, progress=False)
    assert second.images_per_second["vit"] is not None
    assert not np.allclose(second.features["penultimate"][0], first.features["penultimate"][0])
    np.testing.assert_allclose(second.features["penultimate"][0], _direct_penultimate(spec, images), atol=2e-5)


def test_a_touched_checkpoint_is_hashed_once_and_still_served(tmp_path, monkeypatch):
    """Size and time are the cheap check; when the time changes but not the content, the entry
    is used and records the new time, so the next run does not hash the files again."""
    import jaxagree.pipeline.keys as keys

    images, folder = _images(), tmp_path / "vit"
    _save_tiny_vit(folder, seed=0)
    spec = _hf_spec(folder)
    extract([spec], images, cache_dir=tmp_path / "cache", batch_size=8, progress=False)
    weights = folder / "flax_model.msgpack"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    hashed = []
    real = keys.file_sha256
    monkeypatch.setattr(keys, "file_sha256", lambda path: hashed.append(path.name) or real(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = extract([spec], images, cache_dir=tmp_path / "cache", batch_size=8, progress=False)
    assert again.images_per_second["vit"] is None and hashed == ["flax_model.msgpack"]
    extract([spec], images, cache_dir=tmp_path / "cache", batch_size=8, progress=False)
    assert hashed == ["flax_model.msgpack"]  # the entry took the new time


class _StopAfter(ArrayStimuli):
    """Images that stop the run (as Ctrl-C would) once a read reaches ``stop``."""

    def __init__(self, images, stop=None):
        super().__init__(images)
        self.stop = stop

    def read(self, indices):
        indices = list(indices)
        if self.stop is not None and indices[-1] >= self.stop:
            raise KeyboardInterrupt
        return super().read(indices)


def test_partial_results_of_the_checkpoint_before_are_dropped(tmp_path):
    images, folder = _images(12), tmp_path / "vit"
    _save_tiny_vit(folder, seed=0)
    spec = _hf_spec(folder)
    with pytest.raises(KeyboardInterrupt):
        extract([spec], _StopAfter(images, stop=8), cache_dir=tmp_path / "cache", batch_size=4, progress=False,
                checkpoint_seconds=0.0)
    assert len(list((tmp_path / "cache").glob("*/vit/partial/*.npz"))) == 2
    _save_tiny_vit(folder, seed=1)
    resumed = extract([spec], images, cache_dir=tmp_path / "cache", batch_size=4, progress=False)
    np.testing.assert_allclose(resumed.features["penultimate"][0], _direct_penultimate(spec, images), atol=2e-5)


def test_a_python_source_is_keyed_on_its_module_file(tmp_path, monkeypatch):
    module = tmp_path / "my_zoo_module.py"
    module.write_text("from jaxagree.models import build_native\n\n\n"
                      "def build(seed=0):\n    return build_native('convnet', 'tiny', num_classes=10, seed=seed)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec("mine", "python:my_zoo_module:build", "conv", {}, {})
    images = _images()
    extract([spec], images, cache_dir=tmp_path / "cache", batch_size=8, progress=False)
    assert extract([spec], images, cache_dir=tmp_path / "cache", batch_size=8,
                   progress=False).images_per_second["mine"] is None
    module.write_text(module.read_text().replace("seed=0", "seed=1"))
    with pytest.warns(RuntimeWarning, match=r"the model's files changed \(my_zoo_module.py\)"):
        again = extract([spec], images, cache_dir=tmp_path / "cache", batch_size=8, progress=False)
    assert again.images_per_second["mine"] is not None


def test_a_change_to_the_preprocessing_code_recomputes(tmp_path, monkeypatch):
    import jaxagree.models.preprocess as preprocessing

    spec = ModelSpec("a", "native:convnet/tiny", "conv", {"num_classes": 10}, {})
    images = _images()
    extract([spec], images, cache_dir=tmp_path, batch_size=8, progress=False)
    original = preprocessing.preprocess_images

    def changed_preprocessing(images, preprocess):
        return original(images, preprocess) * 1.0

    monkeypatch.setattr(preprocessing, "preprocess_images", changed_preprocessing)
    with pytest.warns(RuntimeWarning, match="jaxagree's preprocessing code changed"):
        again = extract([spec], images, cache_dir=tmp_path, batch_size=8, progress=False)
    assert again.images_per_second["a"] is not None


@pytest.fixture
def fresh_package(tmp_path, monkeypatch):
    """Writes a package of modules under tmp_path and imports one of them anew each time."""
    import importlib
    import linecache

    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no stale .pyc when a file is rewritten at once
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(package: str, files: dict[str, str], module: str):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
        for name, text in files.items():
            (tmp_path / package / f"{name}.py").write_text(text)
        for name in [name for name in sys.modules if name == package or name.startswith(f"{package}.")]:
            del sys.modules[name]  # the package too: it holds its old modules as attributes
        importlib.invalidate_caches()
        linecache.clearcache()  # inspect reads sources through it
        return importlib.import_module(f"{package}.{module}")

    return load


@pytest.mark.parametrize("calls", ["from digestpkg.helpers import helper", "from digestpkg import helpers"])
def test_code_digest_follows_the_helpers_a_function_calls(fresh_package, calls):
    # The helper named directly (helper(x)), or as an attribute of its module (helpers.helper(x)).
    call = "helper(x)" if calls.endswith("import helper") else "helpers.helper(x)"

    def digest_of(main_body: str, helper_body: str, unrelated_body: str) -> str:
        code = (f"{calls}\n\n\ndef main(x):\n    return {main_body.format(call=call)}\n\n\n"
                f"def unrelated(x):\n    return {unrelated_body}\n")
        helpers = f"def helper(x):\n    return {helper_body}\n\n\ndef unused(x):\n    return {unrelated_body}\n"
        return code_digest(fresh_package("digestpkg", {"helpers": helpers, "code": code}, "code").main)

    base = digest_of("{call} + 1", "x * 2", "x")
    assert digest_of("{call} + 1", "x * 2", "x") == base
    assert digest_of("{call} + 10", "x * 2", "x") != base  # the function itself
    assert digest_of("{call} + 1", "x * 20", "x") != base  # a helper in another module of its package
    assert digest_of("{call} + 1", "x * 2", "x + 100") == base  # functions it does not call


def test_the_preprocessing_digest_covers_the_preprocessing_code(fresh_package):
    """The cache key's digest is of preprocess_images and every helper it reaches; it depends on
    the code, not on the module it lives in (a cache written before the code moved stays valid),
    and a change to any helper changes it."""
    import jaxagree.models.preprocess as preprocessing

    assert set(code_sources(preprocessing.preprocess_images)) == {
        f"jaxagree.models.preprocess.{name}" for name in ("preprocess_images", "_resized_shape", "_resample_axis")}
    text = Path(preprocessing.__file__).read_text()

    def digest_of(source: str) -> str:
        return code_digest(fresh_package("preprocesscopy", {"preprocess": source}, "preprocess").preprocess_images)

    assert digest_of(text) == code_digest(preprocessing.preprocess_images)
    edits = {"_resample_axis": ("0.0, 255.0", "0.0, 256.0"),
             "_resized_shape": ("short * width // height", "short * width // height + 0"),
             "preprocess_images": ("(resized_h - size) // 2", "(resized_h - size + 1) // 2")}
    for function, (old, new) in edits.items():
        assert text.count(old) == 1, function
        assert digest_of(text.replace(old, new)) != code_digest(preprocessing.preprocess_images), function


def test_digest_files_hashes_only_files_whose_size_or_time_changed(tmp_path, monkeypatch):
    import jaxagree.pipeline.keys as keys

    path = tmp_path / "weights.bin"
    path.write_bytes(b"one")
    first = digest_files([path], {})
    hashed = []
    real = keys.file_sha256
    monkeypatch.setattr(keys, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert digest_files([path], first) == first and hashed == []
    path.write_bytes(b"two")
    os.utime(path, ns=(path.stat().st_atime_ns, first[str(path)]["mtime_ns"] + 10**9))
    assert digest_files([path], first)[str(path)]["sha256"] != first[str(path)]["sha256"] and hashed == [path]


def test_checkpoint_files_of_a_hub_id_are_its_cached_snapshot(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "flax_model.msgpack", ".gitattributes"):
        (snapshot / name).write_text(name)
    assert checkpoint_files("someone/tiny") == [snapshot / "config.json", snapshot / "flax_model.msgpack"]
    assert checkpoint_files("someone/tiny", "other-branch") == []  # not cached: keyed on id and revision
    assert checkpoint_files("nobody/nothing") == [] and checkpoint_files("not a valid id//") == []


def test_entries_of_an_older_jaxagree_are_recomputed_saying_why(tmp_path):
    spec = ModelSpec("a", "native:convnet/tiny", "conv", {"num_classes": 10}, {})
    images = _images()
    extract([spec], images, cache_dir=tmp_path, batch_size=8, progress=False)
    manifest = next(tmp_path.glob("*/a/entry.json"))
    old = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**old, "model": {"source": spec.source, "options": spec.options}}))
    with pytest.warns(RuntimeWarning, match="written without a key for the model's files and preprocessing"):
        assert extract([spec], images, cache_dir=tmp_path, batch_size=8, progress=False).images_per_second["a"]
