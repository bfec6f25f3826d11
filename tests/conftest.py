"""Shared fixtures. The tiny diffusers pipelines are built once per session into temporary
directories (a few seconds each, on first use only)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tada.testing.tiny import TINY_GENERATION


@pytest.fixture(scope="session")
def tiny_stable_audio_dir(tmp_path_factory) -> str:
    from tada.testing.tiny import build_tiny_stable_audio

    return build_tiny_stable_audio(tmp_path_factory.mktemp("tiny_stable_audio"))


@pytest.fixture(scope="session")
def tiny_audioldm2_dir(tmp_path_factory) -> str:
    from tada.testing.tiny import build_tiny_audioldm2

    return build_tiny_audioldm2(tmp_path_factory.mktemp("tiny_audioldm2"))


@pytest.fixture(scope="session")
def tiny_ace_step15_dir(tmp_path_factory) -> str:
    from tada.testing.tiny import build_tiny_ace_step15

    return build_tiny_ace_step15(tmp_path_factory.mktemp("tiny_ace_step15"))


@pytest.fixture(scope="session")
def tiny_model_config(request) -> Callable[[str], dict[str, Any]]:
    """``make(backend)`` -> a config block for that backend on its tiny pipeline (built lazily)."""

    def make(backend: str) -> dict[str, Any]:
        if backend == "generic":
            return {
                "backend": "generic",
                "path": request.getfixturevalue("tiny_stable_audio_dir"),
                "loader": "tada.testing.tiny:load_stable_audio",
                "generate_fn": "tada.testing.tiny:generate_stable_audio",
                "token_count_fn": "tada.testing.tiny:count_stable_audio_tokens",
                "denoiser": "transformer",
                "layer_patterns": [r"^transformer_blocks\.\d+\.attn2$"],
                "cfg_branches": ["uncond", "cond"],
                **TINY_GENERATION["stable_audio"],
            }
        path = request.getfixturevalue(f"tiny_{backend}_dir")
        return {"backend": backend, "path": path, **TINY_GENERATION[backend]}

    return make


@pytest.fixture(scope="session")
def tiny_model(tiny_model_config) -> Callable[[str], Any]:
    """``get(backend)`` -> a loaded backend on its tiny pipeline, shared by the session."""
    from tada.models import load_model

    cache: dict[str, Any] = {}

    def get(backend: str):
        if backend not in cache:
            cache[backend] = load_model(tiny_model_config(backend), key=f"models.{backend}")
        return cache[backend]

    return get


def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread():
    """Run a test with one torch thread (tiny models are much faster so on a shared 2-core machine:
    the intra-op thread pool only adds synchronisation), restoring the setting afterwards."""
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def module_single_thread():
    """`single_thread` for a whole module: ``pytestmark = pytest.mark.usefixtures("module_single_thread")``."""
    yield from _one_torch_thread()
