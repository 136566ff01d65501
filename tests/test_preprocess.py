"""Preprocessing on the device against outside references: PIL's resize with the same filter, and
each Hugging Face checkpoint's own image processor (which resizes with PIL).

Tolerances, on the 0..255 scale of the input:
- PIL on float images (mode "F"): 0.0026 grey levels (1e-5 of the [0, 1] range). The kernels
  are the same; what is left is float32 summation of up to ~60 taps (seen: at most 7e-4 levels).
- PIL on 8-bit images (what HF processors and torchvision's PIL path do): 1.3 grey levels. PIL
  rounds to 8 bits after its width pass and after its height pass; jaxagree keeps floats. The
  first rounding (at most 0.5) is carried through the second pass's weights (their absolute sum
  is 1 for bilinear, at most 1.25 for bicubic, at most 1.54 for lanczos3), the second adds at
  most 0.5: 1.0, 1.13 and 1.27 levels, plus PIL's 22-bit fixed-point weights (seen: at most 1.14,
  lanczos3 upscaling).
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxagree.models import Preprocess, preprocess_images
from jaxagree.models.huggingface import load_hf
from tests.zoo_helpers import tiny_hf_checkpoint

FLOAT_ATOL = 1e-5 * 255
UINT8_ATOL = 1.3
PIL_FILTERS = {"nearest": Image.Resampling.NEAREST, "linear": Image.Resampling.BILINEAR,
               "cubic": Image.Resampling.BICUBIC, "lanczos3": Image.Resampling.LANCZOS}
# (image height, width), Preprocess size, side before the crop, resize mode, and the (height,
# width) the image must be resized to before the centre crop, worked out by hand: the longer
# side truncated as transformers and torchvision do (26 * 61 / 47 = 33.7 -> 33).
CASES = {
    "down-tall": ((61, 47), 20, 26, "shorter_side", (33, 26)),
    "up-wide": ((13, 17), 24, 24, "shorter_side", (24, 31)),
    "down-square": ((40, 48), 32, 32, "square", (32, 32)),
    "up-square-crop": ((13, 17), 20, 24, "square", (24, 24)),
}

run = jax.jit(preprocess_images, static_argnums=1)


def _case(name, method):
    (height, width), size, short, mode, resized = CASES[name]
    images = np.random.default_rng(sum(map(ord, name))).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    preprocess = Preprocess(size, (0.0,) * 3, (1.0,) * 3, size / short, method, mode, rescale=1.0)
    return images, preprocess, resized


def _centre(x, size):
    top, left = (x.shape[1] - size) // 2, (x.shape[2] - size) // 2
    return x[:, top : top + size, left : left + size]


def _pil_float(images, resized, method):
    """PIL on each channel as a float image, width pass then height pass, each clipped to 0..255
    as PIL's 8-bit passes are (bicubic and lanczos overshoot)."""
    height, width = resized
    out = np.empty((len(images), height, width, 3), np.float32)
    for i, image in enumerate(images):
        for c in range(3):
            x = Image.fromarray(image[..., c].astype(np.float32), mode="F")
            x = Image.fromarray(np.clip(np.asarray(x.resize((width, image.shape[0]), PIL_FILTERS[method])), 0, 255))
            out[i, ..., c] = np.clip(np.asarray(x.resize((width, height), PIL_FILTERS[method])), 0, 255)
    return out


@pytest.mark.parametrize("method", list(PIL_FILTERS))
@pytest.mark.parametrize("name", list(CASES))
def test_resize_matches_pil_on_float_images(name, method):
    images, preprocess, resized = _case(name, method)
    expected = _centre(_pil_float(images, resized, method), preprocess.size)
    np.testing.assert_allclose(np.asarray(run(jnp.asarray(images), preprocess)), expected, rtol=0, atol=FLOAT_ATOL)


@pytest.mark.parametrize("method", ["linear", "cubic", "lanczos3"])
@pytest.mark.parametrize("name", list(CASES))
def test_resize_matches_pil_on_8bit_images(name, method):
    images, preprocess, (height, width) = _case(name, method)
    resized = np.stack([np.asarray(Image.fromarray(image).resize((width, height), PIL_FILTERS[method]))
                        for image in images])
    out = np.asarray(run(jnp.asarray(images), preprocess))
    np.testing.assert_allclose(out, _centre(resized, preprocess.size), rtol=0, atol=UINT8_ATOL)


def test_preprocess_matches_numpy_when_no_resize_is_needed():
    images = np.random.default_rng(1).integers(0, 256, (2, 40, 36, 3), dtype=np.uint8)
    out = np.asarray(run(jnp.asarray(images), Preprocess(32, crop_fraction=32 / 36)))
    # Shorter side already 36: no resize; centre crop 32 x 32 from rows 4..36, columns 2..34.
    expected = (images[:, 4:36, 2:34] / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_bad_preprocess_fields_are_named():
    images = jnp.zeros((1, 8, 8, 3), jnp.uint8)
    with pytest.raises(ValueError, match="Preprocess.resample .* got 'box'"):
        preprocess_images(images, Preprocess(4, resample="box"))
    with pytest.raises(ValueError, match="Preprocess.resize .* got 'stretch'"):
        preprocess_images(images, Preprocess(4, resize="stretch"))


# --- against each checkpoint's own image processor ----------------------------------------------

# Each a model of tests.zoo_helpers (input 32 x 32) and an image processor, chosen so that the
# images below are downscaled (53 x 61) and upscaled (20 x 27). The preprocessing is the
# processor's alone, so one ViT checkpoint carries the BEiT and BiT processors too (building a
# checkpoint per kind costs seconds each); the ResNet one has no image_size in its config.
PROCESSORS = {
    # resize to a square, no crop, bilinear (ViT's default)
    "vit": ("vit", "ViTImageProcessor", {"size": {"height": 32, "width": 32}, "resample": 2}),
    # ConvNeXt's rule, as ResNet checkpoints use it: shortest edge to int(32 / 0.8) = 40, crop 32
    "convnext": ("resnet", "ConvNextImageProcessor", {"size": {"shortest_edge": 32}, "crop_pct": 0.8,
                                                      "resample": 3}),
    # a square of 36, then a centre crop of 32, bicubic (BEiT, DeiT)
    "beit": ("vit", "BeitImageProcessor", {"size": {"height": 36, "width": 36}, "crop_size": 32, "resample": 3}),
    # shortest edge 36, centre crop 32, lanczos (BiT; DINOv2 checkpoints use it)
    "bit": ("vit", "BitImageProcessor", {"size": {"shortest_edge": 36}, "crop_size": 32, "resample": 1}),
    # no rescale and no normalisation: the model takes 0..255
    "vit-raw": ("vit", "ViTImageProcessor", {"size": {"height": 32, "width": 32}, "resample": 3,
                                             "do_rescale": False, "do_normalize": False}),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One tiny checkpoint per model kind, built once; each test copies it and adds its processor."""
    root = tmp_path_factory.mktemp("hf")
    for kind in {kind for kind, _, _ in PROCESSORS.values()}:
        tiny_hf_checkpoint(root / kind, kind)
    return root


def _with_processor(checkpoints, tmp_path, kind, processor_class, settings):
    import transformers

    folder = tmp_path / kind
    shutil.copytree(checkpoints / kind, folder)
    processor = getattr(transformers, processor_class)(**settings)
    processor.save_pretrained(folder)
    return folder, processor


def _compare_with_processor(folder, processor, images):
    """(jaxagree's pixels, the processor's pixels, the tolerance in the processor's units)."""
    *_, preprocess = load_hf("m", str(folder), {})
    ours = np.asarray(jnp.transpose(run(jnp.asarray(images), preprocess), (0, 3, 1, 2)))
    theirs = processor(list(images), return_tensors="np")["pixel_values"].astype(np.float32)
    scale = (processor.rescale_factor if processor.do_rescale else 1.0) / (
        min(processor.image_std) if processor.do_normalize else 1.0)
    return ours, theirs, UINT8_ATOL * scale


@pytest.mark.parametrize("shape", [(53, 61), (20, 27)], ids=["down", "up"])
@pytest.mark.parametrize("name", list(PROCESSORS))
def test_preprocess_matches_the_checkpoints_image_processor(checkpoints, tmp_path, name, shape):
    kind, processor_class, settings = PROCESSORS[name]
    folder, processor = _with_processor(checkpoints, tmp_path, kind, processor_class, settings)
    images = np.random.default_rng(7).integers(0, 256, (3, *shape, 3), dtype=np.uint8)
    ours, theirs, atol = _compare_with_processor(folder, processor, images)
    assert ours.shape == theirs.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)


def test_the_processors_resample_changes_the_preprocessing(checkpoints, tmp_path):
    images = np.random.default_rng(8).integers(0, 256, (2, 45, 39, 3), dtype=np.uint8)
    outputs = []
    for resample in (0, 1, 2, 3):
        folder, processor = _with_processor(checkpoints, tmp_path / str(resample), "vit", "ViTImageProcessor",
                                            {"size": {"height": 32, "width": 32}, "resample": resample})
        ours, theirs, atol = _compare_with_processor(folder, processor, images)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)
        outputs.append(ours)
    # Each filter gives its own pixels, far apart compared with the tolerance.
    for i in range(len(outputs)):
        for j in range(i):
            assert np.abs(outputs[i] - outputs[j]).max() > 10 * atol


@pytest.mark.parametrize("settings, message", [
    ({"resample": 4}, r"model 'm': the ViTImageProcessor of .* resample = 4 \(BOX\), which jaxagree cannot do"),
    ({"resample": 5}, r"resample = 5 \(HAMMING\)"),
    ({"do_resize": False}, "do_resize = false"),
    ({"size": {"height": 32, "width": 40}}, "jaxagree's models take squares"),
    ({"image_processor_type": "MobileViTImageProcessor"}, "'MobileViTImageProcessor', whose preprocessing"),
], ids=["box", "hamming", "no-resize", "not-square", "unknown-processor"])
def test_a_processor_jaxagree_cannot_follow_is_an_error_naming_the_checkpoint(checkpoints, tmp_path, settings,
                                                                              message):
    import json

    folder = tmp_path / "vit"
    shutil.copytree(checkpoints / "vit", folder)
    config = {"image_processor_type": "ViTImageProcessor", "size": {"height": 32, "width": 32}, **settings}
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        load_hf("m", str(folder), {})
