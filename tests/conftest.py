"""Shared test setup: 8 fake CPU devices, strict numpy rank promotion, and the real data directories.

XLA_FLAGS must be set before jax is imported anywhere, so this module sets it at import time; pytest imports
conftest.py before any test module.
"""
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")          # no hub access at test time, ever
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One persistent XLA compilation cache for the session, inherited by every subprocess the tests start: many tests
# compile the same programs (the tiny model's train step, the sampler) under fresh jit closures, and a hit skips the
# compile. Measured on tests/test_lora.py + test_rl_train.py + test_step.py, 2 cores: 8:16 -> 5:11. Started empty
# each session (removed at the end), so nothing carries between runs; set JAX_COMPILATION_CACHE_DIR to keep one.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="caujax-test-xla-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent


def _data_dir(env: str, sub: str) -> pathlib.Path:
    """The env var wins; else the `shared/` checkout beside the repository (how CI and developers lay it out)."""
    path = pathlib.Path(os.environ.get(env) or REPO.parent / "shared" / sub)
    if not path.is_dir():
        # Fail, never skip: a skipped data test in CI is a test that does not exist.
        pytest.fail(f"{env} is not set and {path} does not exist; point {env} at the data directory")
    return path


@pytest.fixture(scope="session")
def caugym_dir() -> pathlib.Path:
    return _data_dir("CAUGYM_DIR", "caugym")


@pytest.fixture(scope="session")
def calm_dir() -> pathlib.Path:
    return _data_dir("CALM_DIR", "calm")


@pytest.fixture(scope="session")
def cladder_dir() -> pathlib.Path:
    return _data_dir("CLADDER_DIR", "external/cladder")


@pytest.fixture(scope="session")
def causalprobe_dir() -> pathlib.Path:
    return _data_dir("CAUSALPROBE_DIR", "external/causalprobe")


def pytest_configure(config):
    try:
        import jax
    except ImportError:       # the plain-Python parts (causal engine, scorers) are testable without jax
        return
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_platforms", "cpu")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
