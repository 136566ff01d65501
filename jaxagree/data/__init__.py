"""Stimulus sources. So far: synthetic probes (:mod:`jaxagree.data.synthetic`)."""

from jaxagree.data.synthetic import Squares, squares, synthetic_images

__all__ = ["Squares", "squares", "synthetic_images"]
