"""Model sources for the extraction tests (imported by zoo files as python:tests.zoo_helpers:...)."""

import os
import signal

from jaxagree.models import build_native


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
