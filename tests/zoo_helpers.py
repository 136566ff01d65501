"""Model sources for the extraction tests (imported by zoo files as python:tests.zoo_helpers:...),
and the text of the zoo files the tests write."""

import json
import os
import signal
import time
from pathlib import Path

from jaxagree.models import build_native

_FAMILIES = {"convnet": "conv", "vit": "attention", "mixer": "mlp"}


def native_entry(name: str, architecture: str, **options) -> dict:
    """A zoo entry for the tiny variant of a native ``architecture`` (convnet, vit, mixer)."""
    return {"name": name, "source": f"native:{architecture}/tiny", "family": _FAMILIES[architecture], **options}


def zoo_toml(*models: dict) -> str:
    """A zoo file's text: one ``[[model]]`` table per entry, keys in order, one ``key = value``
    line each (tests edit these lines as text); a dict value becomes a sub-table
    (``[model.metadata]``)."""

    def value(v) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else json.dumps(v)

    tables = []
    for model in models:
        plain = [f"{k} = {value(v)}\n" for k, v in model.items() if not isinstance(v, dict)]
        subtables = [f"[model.{k}]\n" + "".join(f"{kk} = {value(vv)}\n" for kk, vv in v.items())
                     for k, v in model.items() if isinstance(v, dict)]
        tables.append("[[model]]\n" + "".join(plain) + "".join(subtables))
    return "\n".join(tables)


def tiny_vit(seed: int = 0, num_classes: int = 10):
    return build_native("vit", "tiny", num_classes=num_classes, seed=seed)


def killed_on_request(seed: int = 0):
    """A model whose loading kills the process (SIGKILL) when JAXAGREE_TEST_KILL is set: a run
    interrupted between two models."""
    if os.environ.get("JAXAGREE_TEST_KILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    return build_native("mixer", "tiny", num_classes=10, seed=seed)


def not_a_model():
    return "nothing"


def gated(started: str, go: str, seed: int = 0):
    """A model whose loading creates the file ``started`` and then waits until ``go`` exists:
    holds a run inside this model while a test starts another run on the same cache."""
    Path(started).touch()
    deadline = time.monotonic() + 120
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{go} did not appear")
        time.sleep(0.05)
    return build_native("convnet", "tiny", num_classes=10, seed=seed)


def tiny_hf_checkpoint(folder, kind: str, seed: int = 0) -> str:
    """Save a random-init tiny Hugging Face Flax model of ``kind`` (vit, beit, resnet, regnet,
    dinov2, clip) as a local checkpoint in ``folder``; returns its task."""
    import transformers as tf

    vit_like = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 64}
    convs = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}
    models = {
        "vit": (tf.FlaxViTForImageClassification, lambda: tf.ViTConfig(**vit_like, num_labels=10), "classification"),
        "beit": (tf.FlaxBeitForImageClassification,
                 lambda: tf.BeitConfig(**vit_like, num_labels=10, use_mean_pooling=True), "classification"),
        "resnet": (tf.FlaxResNetForImageClassification,
                   lambda: tf.ResNetConfig(**convs, layer_type="basic", num_labels=10), "classification"),
        "regnet": (tf.FlaxRegNetForImageClassification,
                   lambda: tf.RegNetConfig(**convs, groups_width=8, num_labels=10), "classification"),
        "dinov2": (tf.FlaxDinov2ForImageClassification,
                   lambda: tf.Dinov2Config(**{k: v for k, v in vit_like.items() if k != "intermediate_size"},
                                           mlp_ratio=2, num_labels=10), "classification"),
        "clip": (tf.FlaxCLIPVisionModel, lambda: tf.CLIPVisionConfig(**vit_like), "features"),
    }
    cls, config, task = models[kind]
    # Initialised under jit: HF's default initialises eagerly, op by op (vit: 1.3 s against 3.9 s).
    import jax

    model = cls(config(), seed=seed, _do_init=False)
    params = jax.jit(model.init_weights, static_argnums=1)(jax.random.PRNGKey(seed), model.input_shape)
    model.save_pretrained(folder, params=params)
    return task
