"""Extraction throughput: the engine against a plain jitted loop, in one run.

Models with random weights at the sizes users run most: a ViT-B/16 and a ResNet-50 (Hugging
Face Flax classes with their default configs), saved as local checkpoints and loaded through a
zoo file. For each: images/s of ``jaxagree.pipeline.extract`` (preprocessing on the device from
uint8 images, predictions and pooled features, cache writes included) and of a plain loop a user
would write (``jax.jit(model.__call__)`` over pre-normalised float32 batches, logits only), and
the model FLOP utilisation (FLOPs per image from XLA's cost analysis, times images/s, over the
matmul rate measured in the run).

Usage: ``python benchmarks/bench_extract.py [--quick] [--no-save]``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

try:
    from benchmarks.common import matmul_rate, parse_args, publish
except ImportError:  # run as a script from the benchmarks folder
    from common import matmul_rate, parse_args, publish

CASES = {"ViT-B/16": 64, "ResNet-50": 64}  # model: images
QUICK_IMAGES = 8
BATCH = 16


def build(name: str, folder: Path, quick: bool):
    import transformers as tf

    if name == "ViT-B/16":
        config = tf.ViTConfig(num_labels=1000) if not quick else tf.ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=10)
        model = tf.FlaxViTForImageClassification(config, seed=0)
    else:
        config = tf.ResNetConfig(num_labels=1000) if not quick else tf.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10)
        model = tf.FlaxResNetForImageClassification(config, seed=0)
    path = folder / name.replace("/", "-")
    model.save_pretrained(path)
    return model, path


def plain_loop_seconds(model, images: np.ndarray, size: int, batch: int = BATCH) -> tuple[float, float]:
    """(seconds for all images, FLOPs per image) of jit(model) over normalised NCHW batches."""
    x = (images[:, :size, :size].astype(np.float32) / 255 - 0.5) / 0.25
    batches = [jnp.asarray(np.transpose(x[i : i + batch], (0, 3, 1, 2))) for i in range(0, len(x), batch)]
    forward = jax.jit(lambda b: model(b).logits)
    forward(batches[0]).block_until_ready()
    cost = forward.lower(batches[0]).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    start = time.perf_counter()
    for chunk in batches:
        forward(chunk).block_until_ready()
    return time.perf_counter() - start, float(cost.get("flops", float("nan"))) / batch


def main(argv=None) -> str:
    args = parse_args(argv, __doc__.splitlines()[0])
    rate = matmul_rate(1024 if args.quick else 2048)
    rows = measure({name: QUICK_IMAGES if args.quick else count for name, count in CASES.items()},
                   quick=args.quick, batch=BATCH, rate=rate)
    notes = (
        f"\n\nbatch {BATCH}; float32 matmul rate measured in this run: {rate / 1e9:.1f} GFLOP/s. The engine "
        "preprocesses uint8 images on the device (resize, crop, normalise), returns predictions and pooled "
        "features and writes its cache; the plain loop is handed normalised float32 batches and returns logits. "
        "FLOPs per image from XLA's cost analysis of the plain forward.\n"
    )
    return publish("extract", rows, COLUMNS, notes, args)


def measure(cases: dict[str, int], *, quick: bool, batch: int, rate: float) -> list[dict]:
    """One row per model: engine and plain-loop images/s over ``cases[model]`` images."""
    from jaxagree.models import read_zoo
    from jaxagree.pipeline import extract

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, count in cases.items():
            model, path = build(name, folder, quick)
            size = 32 if quick else 224
            images = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
            zoo = folder / "zoo.toml"
            zoo.write_text(f'[[model]]\nname = "m"\nsource = "hf:{path}"\nfamily = "conv"\n')
            spec = read_zoo(zoo)
            extract(spec, images[:batch], cache_dir=folder / f"warm-{len(rows)}", batch_size=batch,
                    progress=False)  # compiles the forward that the timed run reuses
            start = time.perf_counter()
            result = extract(spec, images, cache_dir=folder / f"cache-{len(rows)}", batch_size=batch, progress=False)
            total = time.perf_counter() - start
            engine = count / result.images_per_second["m"]  # the forward passes, as the engine reports them
            plain, flops = plain_loop_seconds(model, images, size, batch)
            rows.append({
                "model": name, "images": count, "engine_ips": count / engine, "plain_ips": count / plain,
                "ratio": plain / engine, "gflops_per_image": flops / 1e9,
                "mfu": flops * count / engine / rate, "overhead_s": total - engine,
            })
            print(rows[-1], flush=True)
    return rows


COLUMNS = [
    ("model", "model (random weights)", "s"), ("images", "images", "d"),
    ("engine_ips", "engine (images/s)", ".1f"), ("plain_ips", "plain jitted loop (images/s)", ".1f"),
    ("ratio", "engine / plain", ".2f"), ("gflops_per_image", "GFLOP per image", ".2f"),
    ("mfu", "engine FLOP utilisation", ".0%"), ("overhead_s", "loading and cache writes (s)", ".2f"),
]


if __name__ == "__main__":
    main()
