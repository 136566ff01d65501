"""Label spaces: the shipped data, mapping files, decisions on hand-made logits, labels mapped by
name, and extraction within a label space (and its mid-set resume)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxagree.cli import main
from jaxagree.data import ArrayStimuli
from jaxagree.data.labels import decide, imagenet_classes, label_space, map_labels
from jaxagree.io import read_predictions
from jaxagree.models import load_model, read_zoo
from jaxagree.pipeline import extract, preprocess_images


def test_shipped_spaces():
    classes = imagenet_classes()
    assert len(classes.wnids) == 1000 and classes.wnids[0] == "n01440764" and classes.names[0] == "tench"
    assert classes.wnids == sorted(classes.wnids) and classes.names[999] == "toilet tissue"
    imagenet = label_space("imagenet")
    assert imagenet.members.shape == (1000, 1000) and imagenet.members.sum() == 1000
    objectnet = label_space("objectnet")
    assert len(objectnet.categories) == 113 and objectnet.members.sum() == 125
    assert (objectnet.members.sum(axis=0) <= 1).all()  # no ImageNet class in two ObjectNet classes
    chair = objectnet.categories.index("Chair")
    assert np.flatnonzero(objectnet.members[chair]).tolist() == [423, 559, 765]  # barber, folding, rocking chair
    assert objectnet.aliases["alarm_clock"] == objectnet.categories.index("Alarm clock")
    sixteen = label_space("16-class")
    assert sixteen.categories[:3] == ["airplane", "bear", "bicycle"] and len(sixteen.categories) == 16
    assert sixteen.members.sum(axis=1).tolist()[sixteen.categories.index("dog")] == 109
    assert (sixteen.members.sum(axis=0) <= 1).all()
    with pytest.raises(ValueError, match="maps the 1000 ImageNet classes; the model has 10"):
        label_space("16-class", num_classes=10)
    with pytest.raises(ValueError, match="neither a shipped space"):
        label_space("nowhere.json")


def test_decisions_on_hand_made_logits():
    members = jnp.array([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1]], bool)
    # Stimulus 0: class 2 alone is the most probable (max -> category 1), but categories 0 and 2
    # are each made of two fairly probable classes: mean over classes still favours category 1.
    # Stimulus 1: max -> category 0 (class 0); mean -> category 2 (classes 3, 4 both high).
    logits = jnp.log(jnp.array([[0.2, 0.2, 0.3, 0.15, 0.15], [0.35, 0.01, 0.02, 0.31, 0.31]]))
    assert decide(logits, members, decision="max").tolist() == [1, 0]
    assert decide(logits, members, decision="mean").tolist() == [1, 2]
    probabilities = jax.nn.softmax(logits)
    reference = [[float(probabilities[i, np.asarray(m)].mean()) for m in members] for i in range(2)]
    assert np.argmax(reference, axis=1).tolist() == [1, 2]
    # Classes outside every category never decide: a huge logit on class 4 of a space without it.
    partial = jnp.array([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0]], bool)
    assert decide(jnp.array([[0.0, 1.0, 0.0, 0.0, 99.0]]), partial).tolist() == [1]
    assert jax.jit(decide, static_argnames="decision")(logits, members, decision="mean").tolist() == [1, 2]
    # Random overlapping categories: both rules equal their definitions, computed in float64.
    rng = np.random.default_rng(0)
    many = rng.random((7, 40)) < 0.2
    many[np.arange(7), rng.integers(0, 40, 7)] = True  # no empty category
    random_logits = rng.normal(size=(64, 40)) * 3
    masked = np.where(many[None], random_logits[:, None, :], -np.inf).max(axis=-1)
    np.testing.assert_array_equal(decide(jnp.asarray(random_logits), jnp.asarray(many)), masked.argmax(axis=1))
    p = np.exp(random_logits - random_logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(decide(jnp.asarray(random_logits), jnp.asarray(many), decision="mean"),
                                  ((p @ many.T) / many.sum(axis=1)).argmax(axis=1))
    with pytest.raises(ValueError, match="decision must be one of"):
        decide(logits, members, decision="vote")


def test_mapping_files(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"fish": [0, "n01443537"], "bird": ["goldfinch", "house finch"]}))
    space = label_space(path)
    assert space.categories == ["fish", "bird"]
    assert np.flatnonzero(space.members[0]).tolist() == [0, 1] and np.flatnonzero(space.members[1]).tolist() == [11, 12]
    table = tmp_path / "map.csv"
    table.write_text("category,class\nodd,1\nodd,3\neven,2\n")
    small = label_space(table, num_classes=4)
    assert small.categories == ["odd", "even"] and small.members.astype(int).tolist() == [[0, 1, 0, 1], [0, 0, 1, 0]]
    for content, suffix, match in [
        ({"fish": ["not a class"]}, ".json", r"category 'fish': unknown class 'not a class'"),
        ({"bird": ["crane"]}, ".json", r"'crane' names ImageNet classes \[134, 517\].*WordNet id"),
        ({"x": [1000]}, ".json", "out of range"),
        ("category,label\nx,1\n", ".csv", "needs the columns 'category' and 'class'"),
        ("category\tclass\nx\tn99999999\n", ".tsv", r"line 2: unknown class 'n99999999'"),
    ]:
        bad = tmp_path / f"bad{suffix}"
        bad.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(ValueError, match=match):
            label_space(bad)
    (tmp_path / "dogs.csv").write_text("category,class\ndog,beagle\n")
    with pytest.raises(ValueError, match="class 'beagle'; for a model with 10 classes name classes by index"):
        label_space(tmp_path / "dogs.csv", num_classes=10)


def test_labels_are_mapped_by_name():
    sixteen = label_space("16-class")
    # WordNet-id folders (airliner, tench, malamute), an ImageNet name, and a category's own name.
    labels = map_labels(sixteen, np.array([0, 1, 2, 3, 4, -1]),
                        ["n02690373", "n01440764", "n02110063", "tabby", "truck"])
    assert labels.tolist() == [0, -1, 10, 7, 15, -1]
    objectnet = label_space("objectnet")
    assert map_labels(objectnet, np.array([0, 1, 2]), ["banana", "Alarm clock", "air_freshener"]).tolist() == [
        objectnet.categories.index("Banana"), objectnet.categories.index("Alarm clock"), -1]
    # Without category names, labels are model classes: each goes to the one category holding it.
    assert map_labels(sixteen, np.array([404, 0, -1]), None).tolist() == [0, -1, -1]
    assert map_labels(sixteen, None, None) is None


ZOO = """
[[model]]
name = "conv-a"
source = "native:convnet/tiny"
family = "conv"
num_classes = 6
seed = 1

[[model]]
name = "vit-a"
source = "native:vit/tiny"
family = "attention"
num_classes = 6
seed = 2
"""


@pytest.fixture
def zoo(tmp_path):
    path = tmp_path / "zoo.toml"
    path.write_text(ZOO)
    return path


def _logits(spec, images):
    loaded = load_model(spec)
    from flax import nnx

    model = nnx.merge(loaded.forward.graphdef, loaded.params)
    return model(preprocess_images(jnp.asarray(images), loaded.preprocess))[0]


@pytest.mark.parametrize("decision", ["max", "mean"])
def test_extract_within_a_label_space(zoo, tmp_path, decision):
    mapping = tmp_path / "space.csv"
    mapping.write_text("category,class\nlow,0\nlow,1\nlow,2\nmid,3\nhigh,4\nhigh,5\n")
    images = np.random.default_rng(0).integers(0, 256, (9, 24, 24, 3), dtype=np.uint8)
    specs = read_zoo(zoo)
    result = extract(specs, images, cache_dir=tmp_path / "cache", batch_size=4, progress=False,
                     label_space=str(mapping), decision=decision)
    space = label_space(mapping, num_classes=6)
    assert result.label_space.categories == ["low", "mid", "high"]
    for row, spec in zip(result.predictions, specs):
        expected = decide(_logits(spec, images), jnp.asarray(space.members), decision=decision)
        np.testing.assert_array_equal(row, np.asarray(expected))
    plain = extract(specs, images, cache_dir=tmp_path / "cache", batch_size=4, progress=False)
    assert all(rate is None for rate in plain.images_per_second.values())  # top-1 was kept beside it
    assert plain.predictions.max() <= 5 and plain.label_space is None


def test_cli_extract_with_label_space_maps_labels(zoo, tmp_path, capsys):
    mapping = tmp_path / "space.json"
    mapping.write_text(json.dumps({"even": [0, 2, 4], "odd": [1, 3, 5]}))
    images = np.random.default_rng(1).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", images=images, labels=np.array([0, 1, 0, 1, 2, -1]),
             categories=np.array(["odd", "even", "neither"]))
    out = tmp_path / "out"
    assert main(["extract", "--zoo", str(zoo), "--stimuli", f"npz:{tmp_path / 'set.npz'}", "--out", str(out),
                 "--label-space", str(mapping), "--decision", "mean", "--no-progress"]) == 0, capsys.readouterr().err
    table = read_predictions(out / "predictions.npz")
    assert table.categories == ["even", "odd"] and table.labels.tolist() == [1, 0, 1, 0, -1, -1]
    assert set(np.unique(table.predictions)) <= {0, 1}


class _StopAfter(ArrayStimuli):
    """Images that stop the run (as Ctrl-C would) once a read reaches ``stop``; records reads."""

    def __init__(self, images, stop=None):
        super().__init__(images)
        self.stop, self.starts = stop, []

    def read(self, indices):
        indices = list(indices)
        self.starts.append(indices[0])
        if self.stop is not None and indices[-1] >= self.stop:
            raise KeyboardInterrupt
        return super().read(indices)


def test_interrupted_model_resumes_mid_set(zoo, tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (21, 20, 20, 3), dtype=np.uint8)
    specs = read_zoo(zoo)[:1]
    interrupted = _StopAfter(images, stop=12)
    with pytest.raises(KeyboardInterrupt):
        extract(specs, interrupted, cache_dir=tmp_path / "cache", batch_size=4, progress=False,
                checkpoint_seconds=0.0)
    entry = tmp_path / "cache" / interrupted.fingerprint() / "conv-a"
    assert not (entry / "entry.json").exists()
    assert sorted(p.name for p in (entry / "partial").glob("*.npz")) == [
        "000000000-000000004.npz", "000000004-000000008.npz", "000000008-000000012.npz"]
    (entry / "partial" / "000000008-000000012.npz").write_bytes(b"damaged")
    resumed_source = _StopAfter(images)
    with pytest.warns(RuntimeWarning, match="000000008-000000012.npz cannot be used.*from stimulus 8"):
        resumed = extract(specs, resumed_source, cache_dir=tmp_path / "cache", batch_size=4, progress=False,
                          checkpoint_seconds=0.0)
    assert min(resumed_source.starts) == 8  # the first 8 stimuli were not read again; the damaged chunk was
    assert not (entry / "partial").exists() and (entry / "entry.json").exists()
    clean = extract(specs, images, cache_dir=tmp_path / "clean", batch_size=4, progress=False)
    np.testing.assert_array_equal(resumed.predictions, clean.predictions)
    np.testing.assert_allclose(resumed.features["penultimate"][0], clean.features["penultimate"][0], atol=1e-6)
    # Partial results of other outputs (here: another layer set) are dropped, not mixed in.
    (entry / "entry.json").unlink()
    (entry / "partial").mkdir()
    (entry / "partial" / "manifest.json").write_text(json.dumps({"model": {}, "outputs": ["predictions"]}))
    (entry / "partial" / "000000000-000000004.npz").write_bytes(b"stale")
    again = _StopAfter(images)
    extract(specs, again, cache_dir=tmp_path / "cache", batch_size=4, progress=False)
    assert min(again.starts) == 0
