"""Sampling: greedy, temperature, top-k, top-p, seeds, and option checks."""

from __future__ import annotations

import pytest
import torch

from attncli.errors import BadInputError
from attncli.generate.sampling import Sampling, sample


def logits():
    return torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))


def draws(s: Sampling, n=400):
    gen, _ = s.generator(torch.device("cpu"))
    return torch.stack([sample(logits(), s, gen) for _ in range(n)])  # (n, B)


def test_greedy_is_argmax():
    assert sample(logits(), Sampling(), None).tolist() == [0, 3]


def test_top_k_one_and_tiny_top_p_are_greedy():
    assert (draws(Sampling(temperature=1.0, top_k=1, seed=0)) == torch.tensor([0, 3])).all()
    assert (draws(Sampling(temperature=1.0, top_p=0.01, seed=0)) == torch.tensor([0, 3])).all()


def test_top_k_and_top_p_restrict_the_support():
    assert set(draws(Sampling(temperature=1.0, top_k=2, seed=0))[:, 0].tolist()) == {0, 1}
    # p = 0.7: 0.5 alone is not enough, 0.5 + 0.3 reaches it: two tokens kept
    assert set(draws(Sampling(temperature=1.0, top_p=0.7, seed=0))[:, 0].tolist()) == {0, 1}
    assert set(draws(Sampling(temperature=1.0, seed=0))[:, 0].tolist()) == {0, 1, 2, 3}


def test_temperature_sharpens():
    hot = (draws(Sampling(temperature=2.0, seed=1))[:, 0] == 0).float().mean()
    cold = (draws(Sampling(temperature=0.3, seed=1))[:, 0] == 0).float().mean()
    assert cold > 0.8 > hot


def test_same_seed_same_draws():
    s = Sampling(temperature=1.0, seed=7)
    assert torch.equal(draws(s, 50), draws(s, 50))


@pytest.mark.parametrize("kw, words", [
    (dict(temperature=-0.1), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(top_k=0), "top-k"), (dict(top_p=0.0), "top-p"), (dict(top_p=1.5), "top-p"),
])
def test_bad_options(kw, words):
    with pytest.raises(BadInputError, match=words):
        Sampling(**kw)
