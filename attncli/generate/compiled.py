"""The compiled decode step (--compile): torch.compile of Transformer.decode_step, with
static shapes (the cache length rounded up to buckets) so that similar lengths reuse
one compiled graph, and CUDA graphs on a GPU."""

from __future__ import annotations

import time

import torch

from attncli.errors import AttncliError
from attncli.memory import synchronize
from attncli.model.attention.kernels import sdpa_kernel
from attncli.model.cache import KVCache
from attncli.model.transformer import Transformer

Tensor = torch.Tensor


# Cache slots per compiled shape. The compiled step reads every slot (masked when unused):
# at most 127 extra ones, at float32 under 2% of a GPT-2-small step's bytes, at bfloat16
# about 0.2% of a Llama-3.2-1B step's.
COMPILE_BUCKET = 128
READ_BUCKET = 256  # on CUDA, the slots a step reads are rounded up to this: one CUDA graph per bucket


class CompiledStep:
    """torch.compile of Transformer.decode_step, kept on the model so that every
    Generation reuses it (compiled once per model and batch/cache shape). On CUDA it
    uses CUDA graphs (mode "reduce-overhead"); on the CPU plain inductor code."""

    def __init__(self, model: Transformer):
        self.model = model
        if model.device.type == "cuda":
            self.fn = torch.compile(model.decode_step, mode="reduce-overhead", dynamic=False)
        else:
            # C++ wrapper: the step's ~250 kernel and product calls made from C++, not Python
            # (SmolLM2-135M shape, 2 threads: 25.3-25.8 -> 22.8-23.7 ms a step, same process order);
            # not under tensor parallelism: it cannot call the collectives (inductor refuses them)
            self.fn = torch.compile(model.decode_step, dynamic=False, options={"cpp_wrapper": model.tp is None})
        # the new token's slot, written in place each step: no fresh host tensor (a pageable
        # copy on CUDA) per step, and one static input address for CUDA graphs
        self.slot = torch.zeros(1, dtype=torch.long, device=model.device)
        torch._dynamo.mark_static_address(self.slot)
        self._cache: KVCache | None = None
        # The step reads the filled slots only, their count a dynamic size (one compiled graph
        # for every count): on the CPU each 128 slots read but unused cost GPT-2's step ~0.5 ms
        # (18.0 ms at 128 slots, 18.5-19.7 at 256, 22.8-23.4 at 1,024). A CUDA graph is recorded
        # per distinct size, so there the count is rounded up to READ_BUCKET slots: a few
        # recordings per generation, not one per token.
        self.read_bucket = READ_BUCKET if model.device.type == "cuda" else 1
        self._span = torch.empty(0, device=model.device)

    @property
    def cache(self) -> KVCache | None:
        """The cache the step last ran on (cache_for's)."""
        return self._cache

    def cache_for(self, batch: int, max_len: int) -> KVCache:
        """The KV cache the compiled step runs on, owned here and reused (emptied) by every
        generation of the same batch and length. Its tensors are marked static inputs: the
        step writes them in place, and CUDA graphs refuse to capture a step that mutates an
        input they do not own or know to be static (they skip, and the launches stay).
        One cache at a time: a new shape frees the old one first, so memory stays bounded."""
        cache = self._cache
        if cache is not None and (cache.batch, cache.max_len) == (batch, max_len):
            cache.reset()
            return cache
        self._cache = None
        cache = KVCache(self.model.cfg, batch=batch, max_len=max_len, dtype=self.model.dtype, device=self.model.device)
        for t in cache.tensors:
            torch._dynamo.mark_static_address(t)
        self._cache = cache
        return cache

    def step(self, ids: Tensor, positions: Tensor, cache: KVCache, backend: str) -> Tensor:
        """One decode step. Guards are not evaluated again: warm() ran them on this very cache
        shape, padding flag and backend, and nothing the step reads changes between steps;
        their evaluation cost ~0.35-0.8 ms a step on the CPU (the SmolLM2-135M shape: 1-3%)."""
        slot = cache.length
        cache.valid[:, slot] = True
        self.slot.fill_(slot)
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            logits = self.fn(ids, positions, self.slot, cache, backend, self._filled(slot + 1, cache))
        cache.length += 1
        return logits

    def _filled(self, n: int, cache: KVCache, exact: bool = False) -> Tensor:
        """A (n,) tensor whose length, marked dynamic, tells the step how many slots to read
        (n rounded up to read_bucket, at most every slot, unless ``exact``)."""
        if not exact:
            n = min(cache.max_len, -(-n // self.read_bucket) * self.read_bucket)
        if self._span.numel() < cache.max_len:
            self._span = torch.empty(cache.max_len, device=cache.valid.device)
        span = self._span[:n]
        torch._dynamo.maybe_mark_dynamic(span, 0)
        return span

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
        # past dynamo's recompile limit the step would silently run eager while reported as
        # compiled: fail instead, and say what to change
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            try:
                for _ in range(calls):
                    # n = S_max - 1: at n = S_max the sliced cache would be contiguous, and the
                    # graph would specialise on that one length
                    self.fn(ids, pos, self.slot, cache, backend, self._filled(cache.max_len - 1, cache, exact=True))
            except torch._dynamo.exc.FailOnRecompileLimitHit:
                raise AttncliError(
                    f"--compile: the decode step has been compiled for {recompile_limit()} shapes already "
                    f"(batch, cache length in steps of {COMPILE_BUCKET}, backend, padding), torch's limit; "
                    "run fewer shapes in one process, or drop --compile") from None
        synchronize(device)
        return time.perf_counter() - t

    def kernel(self, cache: KVCache, backend: str) -> str:
        """The attention kernel the compiled step runs: on the CPU inductor's own fused loops
        (blocks.Attention._attend); on CUDA SDPA's choice for one query over the slots read
        through a mask (so not flash), or inductor's kernels for the eager math."""
        if self.model.device.type == "cpu" or backend == "eager":
            return "inductor"
        cfg = self.model.cfg
        q = torch.empty(cache.batch, cfg.num_heads, 1, cfg.head_dim, dtype=self.model.dtype, device=self.model.device)
        k = cache.k[0]  # (B, Hkv, S_max, D)
        mask = torch.ones(cache.batch, 1, 1, cache.max_len, dtype=torch.bool, device=self.model.device)
        return sdpa_kernel(q, k, cache.v[0], mask, False, self.model.layers[0].attn.scale,
                           cfg.num_heads != cfg.num_kv_heads)

    def replay(self, ids: Tensor, positions: Tensor, slot: int, cache: KVCache, backend: str) -> Tensor:
        """The step at cache slot ``slot`` again, guards skipped (profile: warm() first)."""
        self.slot.fill_(slot)
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            return self.fn(ids, positions, self.slot, cache, backend, self._filled(slot + 1, cache))


def recompile_limit() -> int:
    return torch._dynamo.config.recompile_limit


def allow_graphs(n: int) -> None:
    """Let one process compile the step for ``n`` shapes (a profile sweep's buckets and
    backends), above dynamo's default of 8; never lowers the limit."""
    torch._dynamo.config.recompile_limit = max(recompile_limit(), n)


def bucket(slots: int) -> int:
    """Cache slots rounded up to COMPILE_BUCKET: the shapes a compiled step is built for."""
    return -(-slots // COMPILE_BUCKET) * COMPILE_BUCKET


def compiled_step(model: Transformer) -> CompiledStep:
    if getattr(model, "_compiled_step", None) is None:
        model._compiled_step = CompiledStep(model)
    return model._compiled_step
