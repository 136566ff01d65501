"""Test set-up: 4 fake CPU devices (set before jax initialises), slow and GPU markers."""

import os
from importlib.metadata import version

# Compile-time flags for the suite, which compiles a kernel for nearly every example, so XLA's
# compile time is most of its run time (test_cka.py: 967 compiles, 56% of its time in the backend).
# - LLVM at -O0: the same HLO and optimised XLA graph, ~35% less compile time (measured:
#   test_extract.py and test_agreement.py 127 s -> 83 s).
# - XLA:CPU's older elemental emitters instead of its fusion emitters, one LLVM module per
#   computation: test_agreement.py and test_counts.py 168 s -> 91 s (2026-12-03).
# Results stay IEEE (XLA:CPU does not enable fast-math), so every tolerance still applies. To test
# the code generation as shipped, set JAXAGREE_TEST_AS_SHIPPED=1 (or any of these flags yourself).
_SUITE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false",
                "--xla_cpu_parallel_codegen_split_count=1")
# XLA aborts on a flag it does not know: jaxlib 0.11 dropped the fusion-emitter switch (checked
# with 0.11.2, the H200 image's), so a newer jaxlib runs the suite without it.
if tuple(int(part) for part in version("jaxlib").split(".")[:2]) >= (0, 11):
    _SUITE_FLAGS = tuple(flag for flag in _SUITE_FLAGS if "fusion_emitters" not in flag)
_GIVEN = os.environ.get("XLA_FLAGS", "")
_COMPILE = "" if os.environ.get("JAXAGREE_TEST_AS_SHIPPED") else " ".join(
    flag for flag in _SUITE_FLAGS if flag.split("=")[0] not in _GIVEN)
os.environ["XLA_FLAGS"] = f"{_GIVEN} --xla_force_host_platform_device_count=4 {_COMPILE}".strip()
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never download: a model-hub lookup fails at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Every example compiles a kernel for new shapes: keep the example count modest (the suite must
# stay well under CI's 10 minutes on 2 cores, where timings vary by 20%), no deadline.
settings.register_profile("jaxagree", max_examples=30, deadline=None)
# CI runs the same examples every time (a failure there is reproducible); "thorough" explores.
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=400, deadline=None)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "jaxagree")
settings.load_profile(PROFILE)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    has_gpu = any(d.platform == "gpu" for d in jax.devices())
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a GPU"))


@pytest.fixture(autouse=True)
def _drop_compiled_kernels():
    """In long exploratory runs every new shape compiles a kernel; XLA:CPU keeps each one mapped
    and after ~1,000 of them LLVM fails to allocate (seen here: 'Cannot allocate memory', then a
    segfault). Dropping them between tests keeps the count down."""
    yield
    if PROFILE == "thorough":
        jax.clear_caches()


@pytest.fixture(scope="session")
def devices():
    found = jax.devices("cpu")
    assert len(found) == 4, f"expected 4 fake CPU devices, got {found}"
    return found
