"""Stimulus sources. So far: synthetic probes (:mod:`jaxagree.data.synthetic`)."""

from jaxagree.data.synthetic import SHAPES, LocalGlobal, Squares, local_global, squares, synthetic_images

__all__ = ["SHAPES", "LocalGlobal", "Squares", "local_global", "squares", "synthetic_images"]
