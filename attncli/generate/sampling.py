"""Choosing the next token from logits, on the device: greedy, temperature, top-k, top-p."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from attncli.errors import BadInputError

Tensor = torch.Tensor


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 = greedy (argmax)
    top_k: int | None = None  # keep the k likeliest tokens
    top_p: float | None = None  # keep the smallest set whose probability reaches p
    seed: int | None = None  # None: a fresh seed, reported so the run can be repeated

    def __post_init__(self) -> None:
        if not (0.0 <= self.temperature < float("inf")):  # NaN fails too
            raise BadInputError(f"--temperature must be >= 0 and finite (0 = greedy), got {self.temperature}")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise BadInputError(f"--seed must be an integer in 0 .. 2**64 - 1, got {self.seed}")
        if self.top_k is not None and self.top_k < 1:
            raise BadInputError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise BadInputError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.temperature == 0.0 and (self.top_k is not None or self.top_p is not None or self.seed is not None):
            given = ", ".join(f for f, v in (("--top-k", self.top_k), ("--top-p", self.top_p), ("--seed", self.seed))
                              if v is not None)
            them = "them" if "," in given else "it"
            raise BadInputError(f"{given}: only sampling uses {them}, and temperature 0 is greedy: add -t T "
                                f"(e.g. -t 0.8), or drop {them}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def generator(self, device: torch.device) -> tuple[torch.Generator | None, int | None]:
        """A seeded generator on ``device`` (None when greedy) and the seed it used."""
        if self.greedy:
            return None, None
        seed = self.seed if self.seed is not None else random.SystemRandom().randrange(2**63)
        return torch.Generator(device=device).manual_seed(seed), seed


def sample(logits: Tensor, sampling: Sampling, generator: torch.Generator | None) -> Tensor:
    """logits (B, V) -> next token ids (B,)."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    scores = logits.float() / sampling.temperature  # (B, V)
    if sampling.top_k is not None and sampling.top_k < scores.shape[-1]:
        kth = torch.topk(scores, sampling.top_k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p is not None and sampling.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        # Drop a token when the tokens ranked above it already reach p; the top one always stays.
        drop = (probs.cumsum(dim=-1) - probs) >= sampling.top_p
        drop[:, 0] = False
        scores = scores.scatter(-1, order, sorted_scores.masked_fill(drop, float("-inf")))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
