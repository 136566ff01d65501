"""Hugging Face Flax checkpoints as zoo models (``hf:HUB_ID`` or ``hf:/local/folder``).

Classifiers load with ``FlaxAutoModelForImageClassification`` (ViT, BEiT, ResNet, RegNet,
DINOv2 with its linear head, ...): the prediction is the top-1 class and the features are what
the classification head receives (the pooled penultimate representation), captured by
intercepting the module named ``classifier``. With ``task = "features"`` a backbone loads with
``FlaxAutoModel`` (``FlaxCLIPVisionModel`` for CLIP): features are its pooled output and there
are no predictions (-1, "no response").

Preprocessing comes from the checkpoint's ``preprocessor_config.json`` (size, crop, mean, std)
when it has one, else from the model config's ``image_size`` with ImageNet statistics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jaxagree.models.native import IMAGENET_MEAN, IMAGENET_STD, Preprocess

TASKS = ("classification", "features")
# Config entries that name things but do not change the computation.
_NOT_SHAPING = {"_name_or_path", "id2label", "label2id", "architectures", "transformers_version"}


class HfForward:
    """``(params, images [batch, size, size, 3]) -> (logits or None, features)`` for one
    checkpoint. Equal (and hashed) by module class, task and the config entries that shape the
    computation, so checkpoints of one architecture share a compiled forward."""

    def __init__(self, module: Any, task: str, config: Any):
        self.module, self.task = module, task
        shape = {k: v for k, v in config.to_dict().items() if k not in _NOT_SHAPING}
        self._key = (type(module).__name__, task, json.dumps(shape, sort_keys=True, default=str))

    def __eq__(self, other) -> bool:
        return isinstance(other, HfForward) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __call__(self, params, images):
        """``(logits or None, layers)``: ``layers`` maps ``hidden_states.K`` (the model's hidden
        states, pooled: mean over tokens, or over space for conv nets) and ``penultimate`` to
        ``[batch, dim]``."""
        import flax.linen as nn

        # The HF wrappers take NCHW and transpose to NHWC before their module: the module
        # takes ours as they are.
        pixel_values = images
        # Models with batch norm (ResNet, RegNet) keep {"params", "batch_stats"}; others the params alone.
        variables = params if "params" in params else {"params": params}
        if self.task == "features":
            outputs = self.module.apply(variables, pixel_values, deterministic=True, output_hidden_states=True)
            pooled = outputs.pooler_output
            return None, {**_pooled(outputs.hidden_states), "penultimate": pooled.reshape(pooled.shape[0], -1)}
        captured = {}

        def capture_head_input(next_fun, args, kwargs, context):
            if context.module.name == "classifier" and context.method_name == "__call__":
                captured.setdefault("features", args[0])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(capture_head_input):
            outputs = self.module.apply(variables, pixel_values, deterministic=True, output_hidden_states=True)
        if "features" not in captured:
            raise ValueError("this checkpoint has no module named 'classifier'; use task = \"features\"")
        features = captured["features"]
        penultimate = features.reshape(features.shape[0], -1)
        return outputs.logits, {**_pooled(outputs.hidden_states), "penultimate": penultimate}


def _pooled(hidden_states) -> dict:
    """Token mean of ``[batch, tokens, dim]``; spatial mean of conv maps, which HF Flax returns
    as ``[batch, channels, height, width]`` (the PyTorch layout)."""
    pooled = {}
    for index, state in enumerate(hidden_states or ()):
        pooled[f"hidden_states.{index}"] = state.mean(axis=(2, 3)) if state.ndim == 4 else state.mean(axis=1)
    return pooled


def load_hf(name: str, location: str, options: dict) -> tuple[HfForward, Any, Preprocess]:
    """(forward, params, preprocess) of a checkpoint."""
    task = options.get("task", "classification")
    if task not in TASKS:
        raise ValueError(f"model {name!r}: task must be one of {TASKS}, got {task!r}")
    unknown = set(options) - {"task", "from_pt", "revision"}
    if unknown:
        raise ValueError(f"model {name!r}: unknown option(s) {sorted(unknown)} for an hf model; "
                         "known: ['from_pt', 'revision', 'task']")
    from transformers import AutoConfig, FlaxAutoModel, FlaxAutoModelForImageClassification, FlaxCLIPVisionModel

    kwargs = {k: options[k] for k in ("from_pt", "revision") if k in options}
    try:
        config = AutoConfig.from_pretrained(location, revision=kwargs.get("revision"))
        if task == "classification":
            model = FlaxAutoModelForImageClassification.from_pretrained(location, **kwargs)
        elif config.model_type in ("clip", "clip_vision_model"):
            model = FlaxCLIPVisionModel.from_pretrained(location, **kwargs)
        else:
            model = FlaxAutoModel.from_pretrained(location, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        local = Path(location).exists()
        hint = (
            "the folder exists but holds no loadable Flax checkpoint (config.json and flax_model.msgpack; "
            "from_pt = true converts PyTorch weights and needs torch)" if local else
            "it is not a local folder, and the Hugging Face hub cannot be reached or has no such model; "
            "download it where there is network (model.save_pretrained(FOLDER)) and use source = \"hf:FOLDER\""
        )
        raise ValueError(f"model {name!r}: cannot load hf checkpoint {location!r}: {hint}. ({error})") from None
    vision_config = getattr(config, "vision_config", config)
    return HfForward(model.module, task, config), model.params, _preprocess(location, vision_config)


def _preprocess(location: str, config) -> Preprocess:
    size = int(getattr(config, "image_size", 224))
    mean, std, crop_fraction = IMAGENET_MEAN, IMAGENET_STD, 1.0
    processor = _processor_config(location)
    if processor:
        mean = tuple(float(v) for v in processor.get("image_mean", mean))
        std = tuple(float(v) for v in processor.get("image_std", std))
        resize = processor.get("size", {})
        crop = processor.get("crop_size", {}) if processor.get("do_center_crop", False) else {}
        if isinstance(resize, int):
            resize = {"shortest_edge": resize}
        if isinstance(crop, int):
            crop = {"height": crop}
        short = resize.get("shortest_edge") or min(resize.get("height", size), resize.get("width", size))
        size = int(crop.get("height", short))
        crop_fraction = size / short
    return Preprocess(size, mean, std, crop_fraction)


def _processor_config(location: str) -> dict:
    path = Path(location) / "preprocessor_config.json"
    if path.is_file():
        return json.loads(path.read_text())
    if Path(location).exists():
        return {}
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(location, "preprocessor_config.json")).read_text())
    except Exception:  # no processor config on the hub (or no hub): fall back to the model config
        return {}
