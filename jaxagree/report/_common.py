"""What every report shares: floats written short, matplotlib without a display."""

from __future__ import annotations

import numpy as np


def short_float(value) -> float:
    """A float32 result as the shortest decimal that round-trips (no spurious digits)."""
    return float(str(np.float32(value)))



def agg_pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
