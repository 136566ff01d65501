"""Stimulus sources: image folders, TFDS datasets (a tiny builder made here, tfds' mock, and
datasets written by jaxagree's converter), ImageNet's validation archive, the cue-conflict probe,
extraction on each SOURCE form, and the scheme -> opener table (every scheme the CLI documents,
imports that run one way)."""

import ast
import graphlib
import io
import json
import re
import tarfile
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import jaxagree.data
from jaxagree.cli import SOURCES_HELP, main
from jaxagree.data import ArrayStimuli, cue_conflict, open_stimuli, prepared_tfds_datasets
from jaxagree.data.convert import prepare_imagenet_validation, write_tfds
from jaxagree.data.sources import OPENERS, source_scheme
from jaxagree.io import read_features, read_predictions

ZOO = """
[[model]]
name = "conv-a"
source = "native:convnet/tiny"
family = "conv"
num_classes = 10

[[model]]
name = "mixer-a"
source = "native:mixer/tiny"
family = "mlp"
num_classes = 10
"""


def _save(path: Path, array: np.ndarray, mode: str | None = None, format: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(path, format=format)


@pytest.fixture
def class_folder(tmp_path):
    """Two classes, PNG and JPEG, one greyscale, sizes that differ."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    pixels = {}
    for name, shape in [("cat/b.png", (20, 30, 3)), ("cat/a.png", (24, 24, 3)), ("dog/c.png", (30, 20, 3)),
                        ("dog/sub/d.png", (24, 24, 3))]:
        pixels[name] = rng.integers(0, 256, shape, dtype=np.uint8)
        _save(root / name, pixels[name])
    grey = rng.integers(0, 256, (24, 24), dtype=np.uint8)
    _save(root / "dog/e.jpg", grey)
    return root, pixels, grey


def test_folder_ids_labels_and_batches(class_folder):
    root, pixels, grey = class_folder
    stimuli = open_stimuli(f"folder:{root}", image_size=None)
    assert stimuli.ids == ["cat/a.png", "cat/b.png", "dog/c.png", "dog/e.jpg", "dog/sub/d.png"]
    assert stimuli.categories == ["cat", "dog"] and stimuli.labels.tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(stimuli.read([0])[0], pixels["cat/a.png"])
    np.testing.assert_array_equal(stimuli.read([4])[0], pixels["dog/sub/d.png"])
    # Greyscale is converted by repeating the channel (JPEG: compare with PIL's own decoding).
    decoded = np.asarray(Image.open(root / "dog/e.jpg"))
    np.testing.assert_array_equal(stimuli.read([3])[0], np.repeat(decoded[:, :, None], 3, axis=2))
    with pytest.raises(ValueError, match=r"dog/c.png.*\(30, 20\).*cat/a.png.*\(24, 24\).*--image-size"):
        stimuli.read([0, 2])
    # The default brings every image to one square: the shorter side resized, the centre cropped.
    square = open_stimuli(f"folder:{root}")
    batches = list(square.batches(2))
    assert [first for first, _ in batches] == [0, 2, 4]
    images = np.concatenate([b for _, b in batches])
    assert images.shape == (5, 256, 256, 3) and images.dtype == np.uint8
    small = open_stimuli(f"folder:{root}", image_size=20).read(range(5))
    expected = np.asarray(Image.fromarray(pixels["cat/b.png"]).resize((30, 20), Image.Resampling.BICUBIC))[:, 5:25]
    np.testing.assert_array_equal(small[1], pixels["cat/b.png"][:, 5:25])  # already 20 high: only cropped
    np.testing.assert_array_equal(expected, pixels["cat/b.png"][:, 5:25])
    assert small.shape == (5, 20, 20, 3)
    # Stable: the same ids and fingerprint on every opening; a changed file changes the fingerprint.
    again = open_stimuli(f"folder:{root}")
    assert again.ids == square.ids and again.fingerprint() == square.fingerprint()
    assert open_stimuli(f"folder:{root}", image_size=64).fingerprint() != square.fingerprint()
    _save(root / "cat/a.png", np.zeros((24, 25, 3), np.uint8))
    assert open_stimuli(f"folder:{root}").fingerprint() != square.fingerprint()


def test_flat_folder_has_no_labels(tmp_path):
    for i in range(3):
        _save(tmp_path / f"{i}.png", np.full((8, 8, 3), i, np.uint8))
    stimuli = open_stimuli(f"folder:{tmp_path}", image_size=None)
    assert stimuli.labels is None and stimuli.categories is None and len(stimuli) == 3
    assert stimuli.read([2])[0, 0, 0, 0] == 2


def test_folder_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        open_stimuli(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="no images"):
        open_stimuli(f"folder:{tmp_path / 'empty'}")
    mixed = tmp_path / "mixed"
    _save(mixed / "top.png", np.zeros((8, 8, 3), np.uint8))
    _save(mixed / "cls" / "x.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="both at the top level"):
        open_stimuli(f"folder:{mixed}")

    bad = tmp_path / "bad"
    _save(bad / "a" / "good.png", np.zeros((8, 8, 3), np.uint8))
    _save(bad / "a" / "rgba.png", np.zeros((8, 8, 4), np.uint8))
    _save(bad / "b" / "cmyk.jpg", np.zeros((8, 8, 3), np.uint8), mode="CMYK")
    (bad / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    truncated = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(truncated, "png")
    (bad / "b" / "truncated.png").write_bytes(truncated.getvalue()[:300])
    stimuli = open_stimuli(f"folder:{bad}", image_size=None)
    assert len(stimuli) == 5
    with pytest.raises(ValueError, match=r"\(a/rgba.png\) has colour mode 'RGBA'"):
        stimuli.read(range(5))
    with pytest.raises(ValueError, match=r"\(b/broken.png\) cannot be decoded.*--skip-bad"):
        stimuli.read([2])
    with pytest.raises(ValueError, match=r"\(b/cmyk.jpg\) has colour mode 'CMYK'"):
        stimuli.read([3])
    with pytest.raises(ValueError, match=r"\(b/truncated.png\) cannot be decoded"):
        stimuli.read([4])
    kept = open_stimuli(f"folder:{bad}", image_size=None, skip_bad=True)
    assert kept.ids == ["a/good.png"] and kept.labels.tolist() == [0] and kept.categories == ["a"]
    assert [path for path, _ in kept.skipped] == ["a/rgba.png", "b/broken.png", "b/cmyk.jpg", "b/truncated.png"]


def test_array_sources(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 10, 3), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", images=images, labels=np.array([0, 1, -1, 1, 0]), ids=np.array(list("abcde")),
             categories=np.array(["x", "y"]))
    stimuli = open_stimuli(f"npz:{tmp_path / 'set.npz'}")
    assert stimuli.ids == list("abcde") and stimuli.categories == ["x", "y"]
    assert stimuli.labels.tolist() == [0, 1, -1, 1, 0]
    np.testing.assert_array_equal(stimuli.read([4, 0]), images[[4, 0]])
    assert open_stimuli(tmp_path / "set.npz", image_size=6).read([0]).shape == (1, 6, 6, 3)
    with pytest.raises(ValueError, match="unknown SOURCE"):
        open_stimuli(tmp_path / "set.txt")
    with pytest.raises(ValueError, match="image_size must be"):
        open_stimuli(tmp_path / "set.npz", image_size=0)
    with pytest.raises(ValueError, match="not unique"):
        ArrayStimuli(images, ids=list("aacde"))


class TinyShapes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A dataset made in the test: greyscale images of varying size, file names, 3 classes."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # defined in a test module: no checksums file to look for

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 1)),
            "label": tfds.features.ClassLabel(names=["circle", "square", "star"]),
            "file_name": tfds.features.Text(),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._examples(7), "validation": self._examples(4)}

    def _generate_examples(self, n):
        return self._examples(n)

    def _examples(self, n):
        for i in range(n):
            pixels = np.full((10 + i, 12, 1), 20 * i, np.uint8)
            yield f"k{i}", {"image": Image.fromarray(pixels[:, :, 0]), "label": i % 3, "file_name": f"img{i}.png"}


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    TinyShapes(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return data_dir


def test_tfds_source_reads_a_prepared_dataset(tiny_tfds):
    stimuli = open_stimuli("tfds:tiny_shapes:validation", data_dir=tiny_tfds)
    assert len(stimuli) == 4 and sorted(stimuli.ids) == [f"img{i}.png" for i in range(4)]
    assert stimuli.categories == ["circle", "square", "star"]
    images = stimuli.read(range(4))
    assert images.shape == (4, 256, 256, 3)  # sizes vary: the default square
    for image, name, label in zip(images, stimuli.ids, stimuli.labels):
        i = int(name[3])
        assert label == i % 3 and (image == 20 * i).all()
    # Slices of a split, an explicit version, and the same ids on every opening.
    head = open_stimuli("tfds:tiny_shapes:1.0.0:train[:3]", data_dir=tiny_tfds, image_size=None)
    assert len(head) == 3 and head.ids == open_stimuli("tfds:tiny_shapes:train[:3]", data_dir=tiny_tfds).ids
    assert head.fingerprint() != open_stimuli("tfds:tiny_shapes:train[:4]", data_dir=tiny_tfds).fingerprint()


def test_tfds_source_errors(tiny_tfds, tmp_path):
    with pytest.raises(ValueError, match=r"no dataset 'nothing_here' in .*prepared there: tiny_shapes:1.0.0"):
        open_stimuli("tfds:nothing_here:train", data_dir=tiny_tfds)
    with pytest.raises(ValueError, match=r"Unknown split 'test'.*train"):
        open_stimuli("tfds:tiny_shapes:test", data_dir=tiny_tfds)
    with pytest.raises(ValueError, match="expected tfds:NAME"):
        open_stimuli("tfds:_tiny", data_dir=tiny_tfds)
    with pytest.raises(ValueError, match=r"not prepared as ArrayRecord in .*prepared there: none"):
        open_stimuli("tfds:mnist:test", data_dir=tmp_path)
    assert prepared_tfds_datasets(tiny_tfds) == ["tiny_shapes:1.0.0"]


def test_tfds_mock_data_source():
    """tfds' own mock of a registered dataset (random MNIST, decoded arrays, 1 channel)."""
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        stimuli = open_stimuli("tfds:mnist:test", image_size=None)
        images = stimuli.read(range(6))
        assert stimuli.ids == [f"test/{i}" for i in range(6)] and stimuli.labels.shape == (6,)
    assert images.shape == (6, 28, 28, 3) and (images[..., 0] == images[..., 2]).all()
    assert stimuli.categories == [str(i) for i in range(10)]


def test_converter_round_trip(class_folder, tmp_path):
    root, _, _ = class_folder
    folder = open_stimuli(f"folder:{root}", image_size=32)
    target = write_tfds(folder, tmp_path / "data", "my_set", progress=False)
    assert (target / "dataset_info.json").exists()
    back = open_stimuli("tfds:my_set:stimuli", data_dir=tmp_path / "data")
    assert back.ids == folder.ids and back.categories == folder.categories
    np.testing.assert_array_equal(back.labels, folder.labels)
    np.testing.assert_array_equal(back.read(range(5)), folder.read(range(5)))  # lossless, order kept
    with pytest.raises(ValueError, match="already holds"):
        write_tfds(folder, tmp_path / "data", "my_set", progress=False)
    with pytest.raises(ValueError, match="dataset name"):
        write_tfds(folder, tmp_path / "data", "My-Set", progress=False)


def test_prepare_imagenet_validation(tmp_path):
    """A fake ILSVRC2012_img_val.tar of 3 JPEGs (one CMYK, one greyscale): read back through
    tfds:imagenet2012:validation with tfds' own labels."""
    archive = tmp_path / "ILSVRC2012_img_val.tar"
    rng = np.random.default_rng(0)
    with tarfile.open(archive, "w") as tar:
        for i, mode in [(1, "RGB"), (2, "CMYK"), (3, "L")]:
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).convert(mode).save(buffer, "jpeg")
            member = tarfile.TarInfo(f"ILSVRC2012_val_{i:08d}.JPEG")
            member.size = len(buffer.getvalue())
            tar.addfile(member, io.BytesIO(buffer.getvalue()))
    prepare_imagenet_validation(archive, tmp_path / "data", progress=False)
    stimuli = open_stimuli("tfds:imagenet2012:validation", data_dir=tmp_path / "data")
    assert sorted(stimuli.ids) == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
    wnids = dict(zip(stimuli.ids, (stimuli.categories[k] for k in stimuli.labels)))
    # tfds' validation_labels.txt: the first three validation images.
    assert wnids == {"ILSVRC2012_val_00000001.JPEG": "n01751748", "ILSVRC2012_val_00000002.JPEG": "n09193705",
                     "ILSVRC2012_val_00000003.JPEG": "n02105855"}
    assert stimuli.read(range(3)).shape == (3, 256, 256, 3)
    with pytest.raises(ValueError, match="no such file"):
        prepare_imagenet_validation(tmp_path / "missing.tar", tmp_path / "data", progress=False)


def test_cue_conflict_bands_come_from_each_source():
    rng = np.random.default_rng(0)
    # Mid-range images, so that nothing is clipped and the bands are exact up to rounding.
    shapes = rng.integers(64, 192, (3, 32, 32, 3), dtype=np.uint8)
    textures = rng.integers(64, 192, (4, 32, 32, 3), dtype=np.uint8)
    probe = cue_conflict(jax.random.key(0), shapes, textures, 10, cutoff=4.0)
    again = cue_conflict(jax.random.key(0), shapes, textures, 10, cutoff=4.0)
    np.testing.assert_array_equal(probe.images, again.images)
    frequency = np.fft.fftfreq(32) * 32
    low = np.hypot(frequency[:, None], frequency[None, :]) <= 4.0
    def band(image, keep):
        spectrum = np.fft.fft2(image.astype(float), axes=(0, 1))
        return np.fft.ifft2(np.where(keep[:, :, None], spectrum, 0), axes=(0, 1)).real

    for image, s, t in zip(probe.images, probe.shape_index, probe.texture_index):
        # Each band, back in pixels, is its source's up to the rounding to integers (< 0.5 a pixel).
        assert np.abs(band(image, low) - band(shapes[s], low)).max() < 1.0
        assert np.abs(band(image, ~low) - band(textures[t], ~low)).max() < 1.0
        assert np.abs(band(image, ~low) - band(shapes[s], ~low)).max() > 20  # and not the shape's texture
    # With labels, shapes pair only with textures of another category.
    labelled = cue_conflict(jax.random.key(1), shapes, textures, 50, cutoff=4.0,
                            shape_labels=np.array([0, 1, 2]), texture_labels=np.array([0, 1, 2, 0]))
    assert (np.array([0, 1, 2])[labelled.shape_index] != np.array([0, 1, 2, 0])[labelled.texture_index]).all()
    with pytest.raises(ValueError, match="cutoff must be in"):
        cue_conflict(jax.random.key(0), shapes, textures, 2, cutoff=40.0)
    with pytest.raises(ValueError, match="one size"):
        cue_conflict(jax.random.key(0), shapes, textures[:, :16, :16], 2)
    with pytest.raises(ValueError, match="no texture of another category"):
        cue_conflict(jax.random.key(0), shapes, textures, 2, shape_labels=np.array([0, 0, 0]),
                     texture_labels=np.array([0, 0, 0, 0]))


def test_cue_conflict_source(class_folder, tmp_path):
    root, _, _ = class_folder
    source = f"synthetic:cue_conflict?shapes=folder:{root}&textures=folder:{root}&n=6&size=32&cutoff=3&seed=2"
    stimuli = open_stimuli(source)
    assert stimuli.read(range(6)).shape == (6, 32, 32, 3) and stimuli.categories == ["cat", "dog"]
    for name, label in zip(stimuli.ids, stimuli.labels):  # the shape's label; the texture is the other class
        shape_id, texture_id = name.split("-", 3)[3].split(".png-")[0], name.rsplit("-", 1)[1]
        assert stimuli.categories[label] == shape_id.split("/")[0] != texture_id.split("/")[0]
    assert open_stimuli(source).fingerprint() == stimuli.fingerprint()
    with pytest.raises(ValueError, match="give textures=SOURCE"):
        open_stimuli(f"synthetic:cue_conflict?shapes=folder:{root}")


def test_extract_on_each_source_form(class_folder, tiny_tfds, tmp_path, capsys):
    """jaxagree extract reads folder:, tfds:, npz: and synthetic: sources; what it writes is what
    agreement and cka read, with the source's ids and labels."""
    root, _, _ = class_folder
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(ZOO)
    np.savez(tmp_path / "set.npz", images=np.zeros((3, 16, 16, 3), np.uint8))
    forms = {
        "folder": (f"folder:{root}", ["--image-size", "32"], 5),
        "tfds": ("tfds:tiny_shapes:train", ["--data-dir", str(tiny_tfds), "--image-size", "24"], 7),
        "npz": (f"npz:{tmp_path / 'set.npz'}", [], 3),
        "synthetic": ("synthetic:local_global?n=4&size=48&grid=5", [], 4),
    }
    for form, (source, options, count) in forms.items():
        out = tmp_path / form
        assert main(["extract", "--zoo", str(zoo), "--stimuli", source, "--out", str(out), "--no-progress",
                     "--batch-size", "4", *options]) == 0, capsys.readouterr().err
        table = read_predictions(out / "predictions.npz")
        assert table.predictions.shape == (2, count) and table.models == ["conv-a", "mixer-a"]
        assert len(read_features(out / "features" / "penultimate").models) == 2
        if form == "folder":
            assert table.stimuli[0] == "cat/a.png"
    assert main(["extract", "--zoo", str(zoo), "--stimuli", "tfds:tiny_shapes:nope", "--data-dir", str(tiny_tfds),
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "Unknown split 'nope'" in capsys.readouterr().err


def test_cli_convert_and_skip_bad(class_folder, tmp_path, capsys):
    root, _, _ = class_folder
    (root / "cat" / "broken.png").write_bytes(b"not an image")
    assert main(["convert", f"folder:{root}", "--name", "pets", "--data-dir", str(tmp_path / "d"),
                 "--image-size", "16", "--no-progress"]) == 2
    assert "cat/broken.png" in capsys.readouterr().err
    assert main(["convert", f"folder:{root}", "--name", "pets", "--data-dir", str(tmp_path / "d"),
                 "--image-size", "16", "--skip-bad", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "skipped cat/broken.png" in err and "tfds:pets:stimuli" in err
    info = json.loads((tmp_path / "d" / "pets" / "1.0.0" / "dataset_info.json").read_text())
    assert int(info["splits"][0]["shardLengths"][0]) == 5


def test_opener_table_covers_every_scheme_the_cli_documents(tmp_path):
    documented = set(re.findall(r"\b([a-z]+):[A-Z]", SOURCES_HELP))  # npz:PATH, tfds:NAME..., not tfds:cifar10:test
    assert documented == set(OPENERS) == {"npz", "folder", "tfds", "synthetic"}
    for scheme in OPENERS:
        assert source_scheme(f"{scheme}:some/where") == (scheme, "some/where")
    # The bare path form the help documents, even where the path holds a colon.
    assert "(or a .npz/.npy path)" in SOURCES_HELP
    assert source_scheme("runs/set.NPY") == ("npz", "runs/set.NPY")
    assert source_scheme("c:/runs/set.npz") == ("npz", "c:/runs/set.npz")
    np.save(tmp_path / "a:b.npy", np.zeros((2, 4, 4, 3), np.uint8))
    assert len(open_stimuli(tmp_path / "a:b.npy")) == 2
    expected = ("unknown SOURCE; expected npz:PATH (or a .npz/.npy file), folder:PATH, tfds:NAME:SPLIT or "
                "synthetic:NAME?params")
    for source in ("http://example.org/set.npz.html", "images/", "npz:set.csv", "Folder:x"):
        with pytest.raises(ValueError) as error:
            open_stimuli(source)
        assert str(error.value) == f"{source}: {expected}"


def _jaxagree_imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(module, imported names, at module level) of each import of a jaxagree module in a file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolved against jaxagree.data
                module = ".".join(["jaxagree", "data"][: 3 - node.level] + ([module] if module else []))
            if module.split(".")[0] == "jaxagree":
                found.append((module, [alias.name for alias in node.names], id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(alias.name, [], id(node) in top) for alias in node.names if alias.name.split(".")[0] == "jaxagree"]
    return found


def test_data_imports_run_one_way():
    """Openers import generators, never the reverse: the generators import nothing from jaxagree,
    no module of jaxagree.data hides an import of jaxagree inside a function (the way a cycle is
    hidden), none takes a private name from another module, and their imports form no cycle."""
    folder = Path(jaxagree.data.__file__).parent
    graph = {}
    for path in sorted(folder.glob("*.py")):
        imports = _jaxagree_imports(path)
        assert not [m for m, _, top in imports if not top], f"{path.name}: jaxagree imported inside a function"
        private = [f"{m}.{name}" for m, names, _ in imports for name in names if name.startswith("_")]
        assert not private, f"{path.name} imports private names {private}"
        graph[f"jaxagree.data.{path.stem}"] = {("jaxagree.data.__init__" if m == "jaxagree.data" else m)
                                               for m, _, _ in imports if m.startswith("jaxagree.data")}
    assert _jaxagree_imports(folder / "synthetic.py") == []
    assert "jaxagree.data.synthetic" in graph["jaxagree.data.sources"]
    list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a cycle
