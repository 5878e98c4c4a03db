"""--compile: the compiled decode step gives the same tokens as the eager one."""

from __future__ import annotations

import pytest

from attncli.errors import BadInputError
from attncli.generate.loop import Generation, generate

PROMPTS = [[5, 17, 42, 9, 77, 31], [7, 8]]  # left padding in the batch


def tokens(model, prompts, max_new_tokens=8, **kw):
    gen = generate(model, prompts, max_new_tokens=max_new_tokens, **kw)
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


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma2", "qwen3", "olmo2", "pythia", "phi3", "smollm3"])
@pytest.mark.parametrize("padded", [False, True])
def test_decode_step_is_one_graph(loaded, name, padded):
    """No graph break anywhere in the step (a dataclass default built inside it once split the
    step into four graphs, each with its own guards and Python between them)."""
    import torch

    from attncli.model.cache import KVCache

    lm, _ = loaded(name)
    cache = KVCache(lm.config, batch=2, max_len=16, dtype=torch.float32, device="cpu")
    cache.has_padding = padded
    with torch.inference_mode():
        explained = torch._dynamo.explain(lm.model.decode_step)(
            torch.tensor([[5], [6]]), torch.tensor([[3], [2]]), torch.tensor([3]), cache, "sdpa")
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_padded_batch_compiles_before_the_clock(loaded):
    """The warm-up sees the padding flag the prefill will set: the timed steps compile nothing."""
    from torch._dynamo.utils import counters

    lm, _ = loaded("llama3-rope")  # a variant no other test compiles
    gen = generate(lm.model, PROMPTS, max_new_tokens=6, compile=True)
    it = iter(gen)
    next(it)  # warm-up (compiles) and prefill
    graphs = counters["stats"]["unique_graphs"]
    for _ in it:
        pass
    assert counters["stats"]["unique_graphs"] == graphs
    assert [r.tokens for r in gen.rows] == tokens(lm.model, PROMPTS, max_new_tokens=6)[0]


def test_compiled_steps_reuse_one_slot_tensor(loaded):
    """The slot reaches the compiled step as the same tensor, filled in place: no host tensor
    per step, and one static address for CUDA graphs."""
    lm, _ = loaded("llama")
    gen = generate(lm.model, [[5, 17, 42]], max_new_tokens=5, compile=True)
    seen, real, step = [], None, None
    for i, _ in enumerate(gen):
        step = lm.model._compiled_step
        if real is None:
            real = step.fn
            step.fn = lambda ids, pos, slot, cache, backend: (seen.append((id(slot), int(slot))), real(
                ids, pos, slot, cache, backend))[1]
    step.fn = real
    assert len(seen) == 4 and len({s for s, _ in seen}) == 1
    assert [v for _, v in seen] == [3, 4, 5, 6]  # the prompt fills slots 0-2
