"""--compile: the compiled decode step gives the same tokens as the eager one."""

from __future__ import annotations

import pytest

from attncli.errors import BadInputError
from attncli.generate.loop import Generation, generate

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


def test_similar_lengths_share_one_compiled_shape(loaded):
    """The compiled step is specialised to the cache shape: different prompt + new lengths
    inside one bucket get the same cache length, hence no recompilation."""
    from torch._dynamo.utils import counters

    lm, _ = loaded("qwen2")  # a variant no other test compiles
    runs = []
    for prompt, new in [([5, 17, 42], 4), ([5, 17, 42, 9, 77, 31, 8], 11)]:
        gen = generate(lm.model, [prompt], max_new_tokens=new, compile=True)
        for _ in gen:
            pass
        runs.append((gen.cache.max_len, counters["stats"]["unique_graphs"]))
        eager = generate(lm.model, [prompt], max_new_tokens=new)
        for _ in eager:
            pass
        assert gen.rows[0].tokens == eager.rows[0].tokens
    assert runs[0][0] == runs[1][0] == lm.config.max_position_embeddings  # 64 < the 128 bucket
    assert runs[1][1] == runs[0][1]  # no new graph for the second length
