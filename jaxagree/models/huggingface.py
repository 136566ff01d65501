"""Hugging Face Flax checkpoints as zoo models (``hf:HUB_ID`` or ``hf:/local/folder``).

Classifiers load with ``FlaxAutoModelForImageClassification`` (ViT, BEiT, ResNet, RegNet,
DINOv2 with its linear head, ...): the prediction is the top-1 class and the features are what
the classification head receives (the pooled penultimate representation), captured by
intercepting the module named ``classifier``. With ``task = "features"`` a backbone loads with
``FlaxAutoModel`` (``FlaxCLIPVisionModel`` for CLIP): features are its pooled output and there
are no predictions (-1, "no response"). Weights come from the checkpoint alone: one that lacks
some (a backbone loaded as a classifier has no head) is an error, never completed at random
(except with ``from_pt``, where HF's PyTorch conversion initialises them and logs a warning).

Preprocessing follows the checkpoint's own image processor (``preprocessor_config.json``: its
class's resize and crop rule, ``resample`` filter, rescale and normalisation) when it has one,
else the model config's ``image_size`` with ImageNet statistics; what jaxagree cannot follow
(an unknown processor class, PIL's BOX or HAMMING filter, a non-square input) is an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jaxagree.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

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
    # _do_init=False: the weights come from the checkpoint only. HF's default first initialises
    # every weight at random, eagerly (a second copy of the model, op by op), and then fills any
    # weight the checkpoint lacks from that draw, with a logged warning; here a missing weight is
    # an error. Converting PyTorch weights (from_pt) reads that random draw, so it keeps HF's way.
    initialise = bool(kwargs.get("from_pt", False))
    kwargs["_do_init"] = initialise
    try:
        config = AutoConfig.from_pretrained(location, revision=kwargs.get("revision"))
        if task == "classification":
            loaded = FlaxAutoModelForImageClassification.from_pretrained(location, **kwargs)
        elif config.model_type in ("clip", "clip_vision_model"):
            loaded = FlaxCLIPVisionModel.from_pretrained(location, **kwargs)
        else:
            loaded = FlaxAutoModel.from_pretrained(location, **kwargs)
        model, params = (loaded, loaded.params) if initialise else loaded
    except (OSError, ValueError, KeyError) as error:
        local = Path(location).exists()
        hint = (
            "the folder exists but holds no loadable Flax checkpoint (config.json and flax_model.msgpack; "
            "from_pt = true converts PyTorch weights and needs torch)" if local else
            "it is not a local folder, and the Hugging Face hub cannot be reached or has no such model; "
            "download it where there is network (model.save_pretrained(FOLDER)) and use source = \"hf:FOLDER\""
        )
        raise ValueError(f"model {name!r}: cannot load hf checkpoint {location!r}: {hint}. ({error})") from None
    if not initialise:
        _check_complete(name, location, task, model, params)
    return HfForward(model.module, task, config), params, _preprocess(name, location, config)


def _check_complete(name: str, location: str, task: str, model, params) -> None:
    """A checkpoint that lacks some of the model's weights (a backbone loaded for
    classification: no head) is refused rather than completed with random ones."""
    from flax.traverse_util import flatten_dict

    missing = sorted("/".join(key) for key in model.required_params - set(flatten_dict(params)))
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        hint = (" (a backbone without a classification head: use task = \"features\")"
                if task == "classification" and any(key.startswith("classifier") for key in missing) else "")
        raise ValueError(f"model {name!r}: hf checkpoint {location!r} lacks weights the model needs: "
                         f"{shown}{hint}; jaxagree does not fill them at random")


def checkpoint_files(location: str, revision: str | None = None) -> list[Path]:
    """The files of a checkpoint, which determine its outputs (weights, config, processor
    config): a local folder's files, or those of the hub id's snapshot in the local Hugging Face
    cache, found without the network; ``[]`` when neither exists (an entry is then keyed on the
    id and revision alone). Hidden files and sub-folders (``.git``, ``.cache``) are left out."""
    folder = Path(location)
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(location, "config.json", revision=revision)
        except ValueError:  # not a valid hub id either: loading will say so
            return []
        if not isinstance(cached, str):
            return []
        folder = Path(cached).parent
    return sorted(path for path in folder.iterdir() if not path.name.startswith(".") and path.is_file())


# PIL's filter codes (a processor config's ``resample``) -> jax.image.resize's methods. Both use
# the same kernels (PIL's bicubic is Keys' with a = -0.5, as jax's cubic; PIL's LANCZOS is
# lanczos3) and antialias the same way when downscaling. PIL's BOX and HAMMING have no counterpart.
_RESAMPLE = {0: "nearest", 1: "lanczos3", 2: "linear", 3: "cubic"}
_PIL_FILTERS = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}
# The image processors whose resizing jaxagree follows, by the rule each applies (a "...Fast"
# variant's config means the same): "size" resizes to ``size`` (``shortest_edge`` keeps the
# aspect ratio, ``height``/``width`` makes a square), then centre-crops to ``crop_size`` when
# ``do_center_crop``; "crop_pct" is ConvNeXt's rule (ResNet and RegNet use it too).
_PROCESSORS = {"ViTImageProcessor": "size", "DeiTImageProcessor": "size", "BeitImageProcessor": "size",
               "CLIPImageProcessor": "size", "BitImageProcessor": "size", "ConvNextImageProcessor": "crop_pct"}


def _preprocess(name: str, location: str, config) -> Preprocess:
    """The :class:`Preprocess` that does what the checkpoint's own image processor does; without
    a processor config, the model config's ``image_size`` with ImageNet statistics, bilinear."""
    raw = _processor_config(location)
    if not raw:
        size = int(getattr(getattr(config, "vision_config", config), "image_size", 224))
        return Preprocess(size, IMAGENET_MEAN, IMAGENET_STD, 1.0)
    processor = _image_processor(name, location, raw, config.model_type)
    where = f"model {name!r}: the {type(processor).__name__} of {location!r}"
    if not processor.do_resize:
        raise ValueError(f"{where} has do_resize = false; jaxagree resizes every stimulus to the model's "
                         "input size, so set do_resize to true in its preprocessor_config.json")
    code = int(processor.resample)
    if code not in _RESAMPLE:
        raise ValueError(f"{where} resamples with resample = {code} ({_PIL_FILTERS.get(code, 'unknown')}), "
                         "which jaxagree cannot do on the device; it can do 0 (NEAREST), 1 (LANCZOS), "
                         "2 (BILINEAR) and 3 (BICUBIC)")
    if _PROCESSORS[type(processor).__name__] == "crop_pct":
        size, short, resize = _crop_pct_geometry(processor)
    else:
        size, short, resize = _size_geometry(processor, where)
    rescale = float(processor.rescale_factor) if processor.do_rescale else 1.0
    mean, std = (processor.image_mean, processor.image_std) if processor.do_normalize else (0.0, 1.0)
    return Preprocess(size, _per_channel(mean, where, "image_mean"), _per_channel(std, where, "image_std"),
                      size / short, _RESAMPLE[code], resize, rescale)


def _image_processor(name: str, location: str, raw: dict, model_type: str):
    """The transformers image processor a processor config describes (its class's defaults fill
    what the file leaves out), found as AutoImageProcessor finds it but without running code."""
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    kind = raw.get("image_processor_type") or raw.get("feature_extractor_type", "").replace(
        "FeatureExtractor", "ImageProcessor")
    if not kind:
        kind = (IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type) or ("",))[0] or ""
    kind = kind.removesuffix("Fast")
    if kind not in _PROCESSORS:
        raise ValueError(f"model {name!r}: {location!r} uses the image processor {kind or 'of no known class'!r}, "
                         f"whose preprocessing jaxagree does not know how to follow; it follows {sorted(_PROCESSORS)}")
    import transformers

    return getattr(transformers, kind).from_dict(raw)


def _size_geometry(processor, where: str) -> tuple[int, int, str]:
    """(crop side, resized side, Preprocess.resize) of the "size" rule."""
    resize = processor.size
    if "shortest_edge" in resize:
        short, mode = resize["shortest_edge"], "shorter_side"
    elif {"height", "width"} <= resize.keys() and resize["height"] == resize["width"]:
        short, mode = resize["height"], "square"
    else:
        raise ValueError(f"{where} resizes to size = {resize}; jaxagree's models take squares, so it needs "
                         "{'shortest_edge': N} or equal height and width")
    if not getattr(processor, "do_center_crop", False):
        if mode == "shorter_side":
            raise ValueError(f"{where} resizes the shortest edge without a centre crop, which keeps each image's "
                             "aspect ratio; jaxagree needs one input size (set do_center_crop and crop_size)")
        return short, short, mode
    crop = processor.crop_size
    if crop.get("height") != crop.get("width") or crop["height"] > short:
        raise ValueError(f"{where} crops to crop_size = {crop}, which is not a square within the resized "
                         f"image ({short} on the shorter side)")
    return crop["height"], short, mode


def _crop_pct_geometry(processor) -> tuple[int, int, str]:
    """ConvNextImageProcessor: below 384 the shortest edge goes to int(shortest_edge / crop_pct)
    and the centre is cropped to shortest_edge; from 384 on the image is resized to a square."""
    side = processor.size["shortest_edge"]
    if side < 384:
        return side, int(side / processor.crop_pct), "shorter_side"
    return side, side, "square"


def _per_channel(value, where: str, key: str) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) else list(value)
    if len(values) != 3:
        raise ValueError(f"{where} has {key} = {value!r}; jaxagree needs one value or one per RGB channel")
    return tuple(float(v) for v in values)


def _processor_config(location: str) -> dict:
    path = Path(location) / "preprocessor_config.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
    if Path(location).exists():
        return {}
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(location, "preprocessor_config.json")).read_text())
    except Exception:  # no processor config on the hub (or no hub): fall back to the model config
        return {}
