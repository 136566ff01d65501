"""Synthetic probes: deterministic per key, and the images have the parameters they claim
(squares measured in the pixels)."""

import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy import ndimage

import jaxagree.data.synthetic
from jaxagree.cli import main
from jaxagree.data import SHAPES, local_global, open_stimuli, squares
from jaxagree.data.synthetic import shape_mask
from jaxagree.io import read_predictions


def measured_squares(image: np.ndarray, background: int) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of each connected patch that differs from the background."""
    labels, count = ndimage.label(image[:, :, 0] != background)
    boxes = ndimage.find_objects(labels)
    return [(b[0].start, b[1].start, b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes[:count]]


@pytest.mark.parametrize("num_squares, size, square", [(2, 64, 6), (3, 96, 8), (4, 128, 5)])
def test_squares_have_the_claimed_sizes_spacings_and_intensities(num_squares, size, square):
    low = (square + 2) * math.sqrt(2)
    high = (size - square) / (num_squares - 1)
    probe = squares(jax.random.key(num_squares), 60, image_size=size, square_size=square, num_squares=num_squares,
                    separation=(low, high), contrast=-0.3, background=0.6)
    assert probe.images.shape == (60, size, size, 3) and probe.images.dtype == np.uint8
    assert ((probe.separations >= low) & (probe.separations <= high)).all()
    background, foreground = round(0.6 * 255), round(0.3 * 255)
    for image, spacing, corners in zip(probe.images, probe.separations, probe.corners):
        assert set(np.unique(image)) == {background, foreground}
        np.testing.assert_array_equal(image[..., 0], image[..., 2])  # grey: three equal channels
        found = measured_squares(image, background)
        assert len(found) == num_squares  # none overlap or touch
        assert all(h == square and w == square for _, _, h, w in found)
        assert sorted((t, left) for t, left, _, _ in found) == sorted(map(tuple, corners.tolist()))
        # Neighbours in the row are `spacing` apart, up to placing each square on whole pixels.
        centres = corners + square / 2
        gaps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        np.testing.assert_allclose(gaps, spacing, atol=math.sqrt(2) + 1e-6)


def test_squares_are_deterministic_per_key():
    a = squares(jax.random.key(3), 20, image_size=48, square_size=4)
    b = squares(jax.random.key(3), 20, image_size=48, square_size=4)
    c = squares(jax.random.key(4), 20, image_size=48, square_size=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    # Spacings cover their range (default: from (square + 2) * sqrt(2) to what fits).
    wide = squares(jax.random.key(5), 400, image_size=48, square_size=4)
    assert wide.separations.min() < 12 and wide.separations.max() > 38


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_squares": 1}, "at least 2"),
        ({"square_size": 64}, "square_size must be in"),
        ({"separation": (5.0, 20.0)}, "could touch or overlap"),
        ({"separation": (20.0, 80.0)}, "largest spacing that fits"),
        ({"contrast": 0.6, "background": 0.5}, "must be in"),
        ({"contrast": 0.0}, "contrast non-zero"),
    ],
)
def test_squares_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        squares(jax.random.key(0), 4, **{"image_size": 64, "square_size": 8, **kwargs})


def test_synthetic_source_string_and_extract(tmp_path, capsys):
    source = "synthetic:squares?n=12&size=32&square=4&count=2&min_sep=9&max_sep=20&contrast=0.4&seed=7"
    first, again = open_stimuli(source), open_stimuli(source)
    np.testing.assert_array_equal(first.images, again.images)
    assert first.images.shape == (12, 32, 32, 3) and first.ids[0] == "squares-7-000000" and first.labels is None
    with pytest.raises(ValueError, match="unknown parameter"):
        open_stimuli("synthetic:squares?n=4&colour=red")
    with pytest.raises(ValueError, match="unknown synthetic probe 'circles'"):
        open_stimuli("synthetic:circles?n=4")
    with pytest.raises(ValueError, match="give both min_sep and max_sep"):
        open_stimuli("synthetic:squares?n=4&min_sep=12")
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[model]]\nname = "c"\nsource = "native:convnet/tiny"\nfamily = "conv"\nnum_classes = 10\n'
                   '[[model]]\nname = "v"\nsource = "native:vit/tiny"\nfamily = "attention"\nnum_classes = 10\n')
    assert main(["extract", "--zoo", str(zoo), "--stimuli", source, "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    table = read_predictions(tmp_path / "out" / "predictions.npz")
    assert table.predictions.shape == (2, 12) and table.stimuli[-1] == "squares-7-000011"


@pytest.mark.parametrize("congruent", [False, True])
def test_local_global_figures_have_the_claimed_global_and_local_shapes(congruent):
    size, grid = 81, 7
    probe = local_global(jax.random.key(1), 80, image_size=size, grid=grid, contrast=-0.6, background=0.9,
                         congruent=congruent)
    cell = size // (grid + 2)
    margin = (size - grid * cell) // 2
    assert probe.images.shape == (80, size, size, 3)
    if congruent:
        np.testing.assert_array_equal(probe.global_shape, probe.local_shape)
    else:
        assert (probe.global_shape != probe.local_shape).all()
    assert set(probe.global_shape.tolist()) == set(range(len(SHAPES)))  # every form is drawn
    background = round(0.9 * 255)
    for image, outer, inner in zip(probe.images, probe.global_shape, probe.local_shape):
        ink = image[..., 0] != background
        figure = ink[margin : margin + grid * cell, margin : margin + grid * cell]
        assert ink.sum() == figure.sum()  # nothing outside the figure
        cells = figure.reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3)
        # The global form: which cells hold an element.
        np.testing.assert_array_equal(cells.any(axis=(2, 3)), shape_mask(SHAPES[outer], grid))
        # The local form: every element is the same small shape, with a 1-pixel gap around it.
        element = np.pad(shape_mask(SHAPES[inner], cell - 2), 1)
        for r, c in zip(*np.nonzero(cells.any(axis=(2, 3)))):
            np.testing.assert_array_equal(cells[r, c], element)


def test_local_global_deterministic_bad_parameters_and_source():
    a = local_global(jax.random.key(2), 10, image_size=64, grid=5)
    np.testing.assert_array_equal(a.images, local_global(jax.random.key(2), 10, image_size=64, grid=5).images)
    with pytest.raises(ValueError, match="grid >= 5"):
        local_global(jax.random.key(0), 4, image_size=64, grid=3)
    with pytest.raises(ValueError, match="pixels per cell"):
        local_global(jax.random.key(0), 4, image_size=40, grid=7)
    with pytest.raises(ValueError, match="contrast non-zero"):
        local_global(jax.random.key(0), 4, contrast=0.0)
    images = open_stimuli("synthetic:local_global?n=6&size=64&grid=5&congruent=1&seed=3")
    assert images.fingerprint() == open_stimuli("synthetic:local_global?n=6&size=64&grid=5&congruent=1&seed=3").fingerprint()
    assert images.images.shape == (6, 64, 64, 3)
    shape = images.ids[0].split("-")[-1]
    assert images.ids[0].startswith("local_global-3-000000-") and images.ids[0].endswith(f"{shape}-{shape}")
    with pytest.raises(ValueError, match="unknown parameter"):
        open_stimuli("synthetic:local_global?n=6&square=4")


def test_generators_work_without_the_rest_of_jaxagree():
    """The generators are pure: their module, loaded on its own in a fresh interpreter, imports
    nothing from jaxagree (not the sources, which open the image sets a probe is made from)."""
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("generators", {jaxagree.data.synthetic.__file__!r})
generators = sys.modules["generators"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generators)
import jax
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "jaxagree")
assert not loaded, loaded
probe = generators.local_global(jax.random.key(0), 2, image_size=35, grid=5)
print(probe.images.shape, sorted(set(generators.__all__) - set(dir(generators))))
"""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "(2, 35, 35, 3) []"
