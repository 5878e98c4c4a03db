"""The compiled decode step (--compile): torch.compile of Transformer.decode_step, with
static shapes (the cache length rounded up to buckets) so that similar lengths reuse
one compiled graph, and CUDA graphs on a GPU."""

from __future__ import annotations

import time

import torch

from attncli.memory import synchronize
from attncli.model.cache import KVCache
from attncli.model.transformer import Transformer

Tensor = torch.Tensor


# Cache slots per compiled shape. The compiled step reads every slot (masked when unused):
# at most 127 extra ones, at float32 under 2% of a GPT-2-small step's bytes, at bfloat16
# about 0.2% of a Llama-3.2-1B step's.
COMPILE_BUCKET = 128


class CompiledStep:
    """torch.compile of Transformer.decode_step, kept on the model so that every
    Generation reuses it (compiled once per model and batch/cache shape). On CUDA it
    uses CUDA graphs (mode "reduce-overhead"); on the CPU plain inductor code."""

    def __init__(self, model: Transformer):
        mode = "reduce-overhead" if model.device.type == "cuda" else None
        self.model = model
        self.fn = torch.compile(model.decode_step, mode=mode, dynamic=False)
        # the new token's slot, written in place each step: no fresh host tensor (a pageable
        # copy on CUDA) per step, and one static input address for CUDA graphs
        self.slot = torch.zeros(1, dtype=torch.long, device=model.device)

    def step(self, ids: Tensor, positions: Tensor, cache: KVCache, backend: str) -> Tensor:
        """One decode step. Guards are not evaluated again: warm() ran them on this very cache
        shape, padding flag and backend, and nothing the step reads changes between steps;
        their evaluation cost ~0.35-0.8 ms a step on the CPU (the SmolLM2-135M shape: 1-3%)."""
        slot = cache.length
        cache.valid[:, slot] = True
        self.slot.fill_(slot)
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            logits = self.fn(ids, positions, self.slot, cache, backend)
        cache.length += 1
        return logits

    def warm(self, cache: KVCache, backend: str, calls: int = 3) -> float:
        """Compile (and, on CUDA, record the graph) before any timing, for the cache as the
        steps will see it (its padding flag set: a graph compiled without it would recompile
        at the first timed step). The warm-up writes the cache's last slot, which every real
        step masks as a future slot until it overwrites it. Returns the seconds spent."""
        device = cache.valid.device
        ids = torch.zeros(cache.batch, 1, dtype=torch.long, device=device)
        pos = torch.zeros(cache.batch, 1, dtype=torch.long, device=device)
        self.slot.fill_(cache.max_len - 1)
        t = time.perf_counter()
        for _ in range(calls):
            self.fn(ids, pos, self.slot, cache, backend)
        synchronize(device)
        return time.perf_counter() - t


def compiled_step(model: Transformer) -> CompiledStep:
    if getattr(model, "_compiled_step", None) is None:
        model._compiled_step = CompiledStep(model)
    return model._compiled_step
