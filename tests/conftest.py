"""Shared fixtures: tiny models built locally, a model cache, a local Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rlhf_stack.core.models import ModelSpec, resolve_model

# Ray binds a local cluster to the machine's network address unless told this is a single-machine setup; tests
# keep every Ray process on loopback. (Set before any test module imports ray.)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Every Ray the tests start or join uses token authentication (the token lives in ~/.ray/auth_token).
os.environ.setdefault("RAY_AUTH_MODE", "token")

REPO = Path(__file__).resolve().parents[1]
# Unchanged excerpts of the public benchmark files (RM-Bench, AlpacaEval 2 annotations with leaderboard numbers,
# RewardBench's section table) are kept with their sources in the team's shared folder beside the checkout.
BENCHMARK_EXCERPTS = Path(os.environ.get("RLHF_STACK_BENCHMARK_EXCERPTS",
                                         REPO.parent / "shared" / "data" / "benchmarks"))


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """Built models go to RLHF_STACK_CACHE (the Makefile sets it); a fresh temp folder otherwise."""
    if not os.environ.get("RLHF_STACK_CACHE"):
        os.environ["RLHF_STACK_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return resolve_model(ModelSpec(source="tiny-random-llama"), REPO)


@pytest.fixture(scope="session")
def tiny_policy() -> Path:
    return resolve_model(ModelSpec(source="tiny-random-llama", seed=1), REPO)


@pytest.fixture(scope="session")
def excerpts() -> Path:
    """The benchmark excerpts' folder; tests that read it are skipped, with the reason, on a checkout without it."""
    if not BENCHMARK_EXCERPTS.is_dir():
        pytest.skip(f"no benchmark excerpts at {BENCHMARK_EXCERPTS} "
                    "(set RLHF_STACK_BENCHMARK_EXCERPTS to their folder)")
    return BENCHMARK_EXCERPTS
