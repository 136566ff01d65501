"""Stimulus sources: decoding a folder of JPEGs, and how well decoding overlaps device work.

A folder of ImageNet-sized JPEGs (500 x 375, quality 90, one sub-folder per class) is made in
a temporary folder. Two measures, in one run:

* decoding: images/s of ``folder:`` reading (PIL in a thread pool, shorter side to 256,
  centre crop) against the plain serial PIL loop a user would write for the same images;
* overlap: ``extract`` of a native conv net over the folder source, against the same run over
  the images already decoded in memory plus the decoding alone. A ratio above 1 means decoding
  ran while the model did.

Usage: ``python benchmarks/bench_sources.py [--quick] [--no-save]``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from benchmarks.common import parse_args, publish
except ImportError:  # run as a script from the benchmarks folder
    from common import parse_args, publish

IMAGES, QUICK_IMAGES = 512, 48
SIZE = 256


def make_folder(root: Path, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (count, 24, 32, 3), dtype=np.uint8)  # smooth after upsampling: JPEG-like sizes
    for i in range(count):
        folder = root / f"class{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(base[i]).resize((500, 375), Image.Resampling.BILINEAR).save(folder / f"{i:05d}.jpg",
                                                                                     quality=90)


def serial_pil(paths: list[Path]) -> np.ndarray:
    """The loop a user would write: open, convert, resize the shorter side, centre crop."""
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            w, h = image.size
            scale = SIZE / min(w, h)
            image = image.resize((max(SIZE, round(w * scale)), max(SIZE, round(h * scale))),
                                 Image.Resampling.BICUBIC)
            left, top = (image.size[0] - SIZE) // 2, (image.size[1] - SIZE) // 2
            out.append(np.asarray(image.crop((left, top, left + SIZE, top + SIZE))))
    return np.stack(out)


def main(argv=None) -> str:
    args = parse_args(argv, __doc__.splitlines()[0])
    count = QUICK_IMAGES if args.quick else IMAGES
    from jaxagree.data import ArrayStimuli, open_stimuli
    from jaxagree.models import read_zoo
    from jaxagree.pipeline import extract

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_folder(root, count)
        source = open_stimuli(f"folder:{root}", image_size=SIZE)
        paths = [root / name for name in source.ids]
        serial_pil(paths[:8]), source.read(range(8))  # warm the file cache and PIL
        start = time.perf_counter()
        reference = serial_pil(paths)
        serial = time.perf_counter() - start
        start = time.perf_counter()
        pooled = np.concatenate([images for _, images in source.batches(64)])
        pool = time.perf_counter() - start
        assert np.array_equal(pooled, reference), "the pool decodes differently from the serial loop"
        rows.append({"case": f"decode {count} JPEGs 500x375 -> {SIZE}", "jaxagree_s": pool, "peer_s": serial,
                     "peer": "serial PIL loop", "ratio": serial / pool})

        zoo = Path(tmp) / "zoo.toml"
        variant = "tiny" if args.quick else "small"
        zoo.write_text(f'[[model]]\nname = "conv"\nsource = "native:convnet/{variant}"\nfamily = "conv"\n')
        spec = read_zoo(zoo)
        extract(spec, ArrayStimuli(reference[:32]), cache_dir=Path(tmp) / "warm", batch_size=32, progress=False)
        start = time.perf_counter()
        extract(spec, ArrayStimuli(reference), cache_dir=Path(tmp) / "array", batch_size=32, progress=False)
        in_memory = time.perf_counter() - start
        start = time.perf_counter()
        extract(spec, source, cache_dir=Path(tmp) / "folder", batch_size=32, progress=False)
        from_folder = time.perf_counter() - start
        rows.append({"case": f"extract convnet/{variant} over the folder ({count} images)", "jaxagree_s": from_folder,
                     "peer_s": in_memory + pool, "peer": "decoded in memory + decoding alone",
                     "ratio": (in_memory + pool) / from_folder})
        print(rows[-1], flush=True)
    notes = (f"\n\nImages decoded in memory: extract took {in_memory:.2f} s; decoding alone {pool:.2f} s. "
             "Ratios above 1 are faster than the peer (for the overlap row: decoding hidden behind the model).\n")
    return publish("sources", rows, COLUMNS, notes, args)


COLUMNS = [
    ("case", "case", "s"), ("jaxagree_s", "jaxagree (s)", ".2f"), ("peer", "peer", "s"),
    ("peer_s", "peer (s)", ".2f"), ("ratio", "peer / jaxagree", ".2f"),
]


if __name__ == "__main__":
    main()
