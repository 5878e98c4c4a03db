"""--compile: the compiled decode step gives the same tokens as the eager one."""

from __future__ import annotations

import pytest

from attncli.errors import BadInputError
from attncli.generate import Generation, generate

PROMPTS = [[5, 17, 42, 9, 77, 31], [7, 8]]  # left padding in the batch


def tokens(model, prompts, **kw):
    gen = generate(model, prompts, max_new_tokens=8, **kw)
    for _ in gen:
        pass
    return [r.tokens for r in gen.rows], gen.stats


@pytest.mark.parametrize("name", ["llama", "mistral-window", "gpt2"])
def test_compiled_decode_equals_eager(loaded, name):
    lm, _ = loaded(name)
    want, _ = tokens(lm.model, PROMPTS)
    got, stats = tokens(lm.model, PROMPTS, compile=True)
    assert got == want
    assert stats.compile_s is not None and stats.compile_s > 0
    again, stats2 = tokens(lm.model, PROMPTS, compile=True)  # compiled once, kept on the model
    assert again == want and stats2.compile_s < stats.compile_s


def test_compile_needs_the_cache(loaded):
    lm, _ = loaded("llama")
    with pytest.raises(BadInputError, match="needs the KV cache"):
        Generation(lm.model, PROMPTS, max_new_tokens=4, use_cache=False, compile=True)
