"""Shared fixtures: tiny reference checkpoints, saved once per test session."""

from __future__ import annotations

import os

import pytest
import torch

# Tiny models gain nothing from threads, and 2 threads on a 2-core machine that is busy
# elsewhere turn a microsecond product into milliseconds of waiting.
torch.set_num_threads(1)
# one process compiles decode_step for dozens of tiny models here (dynamo counts graphs per
# code object, all models together); a user's run compiles one or a profile's few
torch._dynamo.config.recompile_limit = 64
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """saved(name, **kw) -> (folder, reference model); each variant saved once."""
    from hf_factory import save_variant

    cache: dict = {}

    def get(name: str, **kw):
        key = (name, tuple(sorted(kw.items())))
        if key not in cache:
            folder = tmp_path_factory.mktemp(name)
            cache[key] = (folder, save_variant(name, folder, **kw))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def loaded(saved):
    """loaded(name) -> (our LoadedModel on CPU float32, reference model)."""
    from attncli.checkpoint.load import load_model

    cache: dict = {}

    def get(name: str):
        if name not in cache:
            folder, ref = saved(name)
            cache[name] = (load_model(folder, device="cpu"), ref)
        return cache[name]

    return get


def pytest_collection_modifyitems(config, items):
    # The transformers reference must be present in CI: a parity test that cannot run
    # is a failure there, not a skip.
    if os.environ.get("CI"):
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise pytest.UsageError("transformers (the test reference) is not installed: pip install -e '.[test]'")


@pytest.fixture(scope="session")
def model_dir(saved, tmp_path_factory):
    """model_dir(name) -> a copy of a tiny checkpoint with a word tokenizer beside it."""
    import shutil

    from helpers import write_word_tokenizer

    made: dict = {}

    def get(name: str):
        if name not in made:
            dst = tmp_path_factory.mktemp("with-tokenizer") / name
            shutil.copytree(saved(name)[0], dst)
            write_word_tokenizer(dst)
            made[name] = dst
        return made[name]

    return get


@pytest.fixture
def two_threads():
    """Two intra-op threads for the test: the split products run only then."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
