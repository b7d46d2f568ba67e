"""Test-session setup: 4 virtual CPU devices, persistent compile cache, no network."""

import os
import pathlib

# Must happen before JAX initialises its backend: multi-device tests (stats
# allreduce, later data-parallel training) need several CPU devices.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path(__file__).resolve().parents[1] / ".cache" / "jax"))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# Fixed-shape hypothesis inputs keep compilations few; no deadline because a
# first example pays for compilation.
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(1234)


def _memory_maps() -> int:
    try:
        with open(f"/proc/{os.getpid()}/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux
        return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_executables():
    """Frees compiled executables after each test module.

    Every XLA:CPU executable keeps ~5 memory mappings while it is cached; the
    whole suite compiles thousands of programs, and one process reached the
    kernel's 65,530-mapping limit ("LLVM compilation error: Cannot allocate
    memory", then a crash). Clearing JAX's caches between modules bounds it.
    """
    yield
    before = _memory_maps()
    jax.clear_caches()
    if os.environ.get("BSKMQ_REPORT_MAPS"):
        print(f"\n[memory maps at module end: {before}, after clearing: {_memory_maps()}]")
