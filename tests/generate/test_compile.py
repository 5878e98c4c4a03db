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
            step.fn = lambda ids, pos, slot, cache, backend, *rest: (seen.append((id(slot), int(slot))), real(
                ids, pos, slot, cache, backend, *rest))[1]
    step.fn = real
    assert len(seen) == 4 and len({s for s, _ in seen}) == 1
    assert [v for _, v in seen] == [3, 4, 5, 6]  # the prompt fills slots 0-2


def _mutated_placeholders(fn, *args):
    """Names of the step's inputs it writes in place, each with its static-input mark, from
    the graph dynamo hands a backend (what inductor's CUDA graphs judge it by)."""
    import torch

    found = {}

    def backend(gm, example_inputs):
        marks = {n.name: n.meta.get("tensor_dict", {}).get("_dynamo_static_input_type")
                 for n in gm.graph.nodes if n.op == "placeholder"}
        for n in gm.graph.nodes:
            if n.op == "call_method" and str(n.target).endswith("_") and n.args and n.args[0].name in marks:
                found[n.args[0].name] = marks[n.args[0].name]
        return gm

    with torch.inference_mode():
        torch.compile(fn, backend=backend, dynamic=False)(*args)
    return found


def test_compiled_step_mutates_static_inputs_only(loaded):
    """CUDA graphs skip a step that writes an input they neither own nor know to be static
    (inductor's 'mutated inputs' skip, under which --compile keeps every launch): the KV
    tensors the step writes are the compiled step's own cache, marked static."""
    import torch

    from attncli.generate.compiled import compiled_step
    from attncli.model.cache import KVCache

    lm, _ = loaded("llama")
    cache = compiled_step(lm.model).cache_for(1, 16)
    args = (torch.tensor([[5]]), torch.tensor([[3]]), torch.tensor([3]), cache, "sdpa")
    marks = _mutated_placeholders(lm.model.decode_step, *args)
    assert len(marks) == 2 * lm.config.num_layers  # K and V of every layer
    assert all(m is not None for m in marks.values()), marks
    plain = KVCache(lm.config, batch=1, max_len=16, dtype=torch.float32, device="cpu")
    unmarked = _mutated_placeholders(lm.model.decode_step, *args[:3], plain, "sdpa")
    assert unmarked and all(m is None for m in unmarked.values())  # the check can fail


def test_generations_reuse_the_compiled_steps_cache(loaded):
    """One cache per compiled step, emptied for each generation of the same shape (same
    addresses: a CUDA graph replays instead of re-recording), replaced for a new shape."""
    lm, _ = loaded("llama")
    first = generate(lm.model, [[5, 17, 42]], max_new_tokens=4, compile=True)
    want = tokens(lm.model, [[5, 17, 42]], max_new_tokens=4)[0]
    assert [r.tokens for r in (list(first) and first.rows)] == want
    second = generate(lm.model, [[9, 8]], max_new_tokens=3, compile=True)
    list(second)
    assert second.cache is first.cache and second.cache.length == 2 + 2
    assert [r.tokens for r in second.rows] == tokens(lm.model, [[9, 8]], max_new_tokens=3)[0]
    wider = generate(lm.model, PROMPTS, max_new_tokens=3, compile=True)
    list(wider)
    assert wider.cache is not first.cache and lm.model._compiled_step._cache is wider.cache


def test_past_the_recompile_limit_the_step_fails_loudly(loaded):
    """Past dynamo's limit a compiled function silently runs eager; the step refuses instead."""
    import torch

    from attncli.errors import AttncliError
    from attncli.generate.compiled import CompiledStep

    lm, _ = loaded("llama")
    step = CompiledStep(lm.model)
    # (the limit counts every model's graphs of decode_step in the process: the first may hit it)
    with torch._dynamo.config.patch(recompile_limit=1), torch.inference_mode(), \
            pytest.raises(AttncliError, match="compiled for 1 shapes already"):
        step.warm(step.cache_for(1, 16), "sdpa", calls=1)
        step.warm(step.cache_for(1, 32), "sdpa", calls=1)


def test_compiled_decode_names_its_kernel(loaded):
    lm, _ = loaded("llama")
    gen = generate(lm.model, [[5, 17, 42]], max_new_tokens=3, compile=True)
    list(gen)
    assert gen.stats.attn_kernels == {"decode": "inductor", "prefill": "sdpa/flash"}


@pytest.mark.parametrize("name", ["llama", "mistral-window", "gemma2"])
def test_the_step_reading_the_filled_slots_equals_the_whole_cache(loaded, name):
    """The compiled CPU step reads the first n slots (n dynamic, one graph): the same logits
    as reading every slot through the mask, padded batch and windows included."""
    import torch

    from attncli.model.cache import KVCache

    lm, _ = loaded(name)
    cache = KVCache(lm.config, batch=2, max_len=32, dtype=torch.float32, device="cpu")
    ids = torch.tensor([[5, 17, 42, 9, 77, 31], [0, 0, 0, 0, 7, 8]])
    mask = (torch.arange(6) >= torch.tensor([[0], [4]])).long()
    with torch.inference_mode():
        lm.model(ids, attention_mask=mask, cache=cache)
        cache.valid[:, 6] = True
        args = (torch.tensor([[3], [4]]), torch.tensor([[6], [2]]), torch.tensor([6]), cache, "sdpa")
        whole = lm.model.decode_step(*args)
        part = lm.model.decode_step(*args, torch.empty(7))
    torch.testing.assert_close(part, whole)
    from attncli.generate.compiled import compiled_step

    assert compiled_step(lm.model).read_bucket == 1  # the CPU's compiled step reads exactly the filled slots


def test_bucketed_reads_give_the_same_tokens_with_one_graph(loaded):
    """CUDA rounds the slots read up to READ_BUCKET (a CUDA graph per distinct size): the same
    mechanism on the CPU, with a bucket of 4, gives the same tokens and compiles nothing new
    over the timed steps."""
    from torch._dynamo.utils import counters

    from attncli.generate.compiled import compiled_step

    lm, _ = loaded("phi3")  # a window on every layer, fused checkpoint projections
    want = tokens(lm.model, PROMPTS, max_new_tokens=12)[0]
    step = compiled_step(lm.model)
    step.read_bucket = 4
    try:
        gen = generate(lm.model, PROMPTS, max_new_tokens=12, compile=True)
        it = iter(gen)
        next(it)
        graphs = counters["stats"]["unique_graphs"]
        for _ in it:
            pass
        assert counters["stats"]["unique_graphs"] == graphs
        assert [r.tokens for r in gen.rows] == want
    finally:
        step.read_bucket = 1
