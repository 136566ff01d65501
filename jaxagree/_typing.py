"""Array aliases with the axis names shared across jaxagree.

Axis names: ``models``, ``stimuli``, ``categories``, ``subsets``, ``dim``. Under pytest the
annotations are checked at run time (jaxtyping + beartype); elsewhere they are documentation.
"""

import jax
import numpy as np

# Public functions accept NumPy or JAX arrays; kernels inside jit see jax.Array only.
AnyArray = jax.Array | np.ndarray
