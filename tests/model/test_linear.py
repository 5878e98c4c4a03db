"""CPU products: split ones give the same numbers as F.linear, for both storages, and are
taken only for inputs of at most SPLIT_MAX_ROWS rows with more than one thread; larger
float32 inference products go to oneDNN, with the same numbers too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attncli.model import linear as linear_mod
from attncli.model.linear import Linear, split_product


def _weights(out_f, in_f, seed=0, rows=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g)
    return w, w.t().contiguous().t(), torch.randn(out_f, generator=g), torch.randn(rows, in_f, generator=g)


@pytest.mark.parametrize("rows", [1, 5])
@pytest.mark.parametrize("ways", [2, 3, 4])
@pytest.mark.parametrize("storage", ["out_in", "in_out"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(96, 48), (36, 96), (48, 48)])
def test_split_product_equals_linear(shape, storage, bias, ways, rows):
    w, wt, b, x = _weights(*shape, rows=rows)
    weight = w if storage == "out_in" else wt
    b = b if bias else None
    got = split_product(x, weight, b, ways)
    assert got is not None and got.shape == (rows, shape[0])
    exact = F.linear(x.double(), w.double(), None if b is None else b.double())
    # no further from the float64 product than F.linear itself, within rounding
    err_split = (got.double() - exact).abs().max().item()
    err_linear = (F.linear(x, weight, b).double() - exact).abs().max().item()
    assert err_split <= 4 * err_linear + 1e-6
    torch.testing.assert_close(got, F.linear(x, w, b))


def test_split_product_declines_an_uneven_split():
    w, wt, b, x = _weights(7, 5)
    assert split_product(x, w, b, 2) is None  # 7 rows
    assert split_product(x, wt, b, 2) is None  # inner dimension 5
    w2 = torch.randn(8, 6)[:, :5]  # neither storage: a strided slice
    assert split_product(x, w2, None, 2) is None


def test_split_product_runs_the_blocks_as_one_batched_product(monkeypatch):
    calls = []
    real = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda a, b_: calls.append((tuple(a.shape), tuple(b_.shape))) or real(a, b_))
    w, wt, _, x = _weights(64, 32)
    split_product(x, wt, None, 2)
    split_product(x, w, None, 2)
    assert calls == [((2, 1, 16), (2, 16, 64)), ((2, 1, 32), (2, 32, 32))]


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = linear_mod.split_product

    def spy(*a):
        calls.append(a[0].shape)
        return real(*a)

    monkeypatch.setattr(linear_mod, "split_product", spy)
    return calls


def _layer(split: bool) -> Linear:
    layer = Linear(32, 64).requires_grad_(False)
    layer.split_rows = split
    return layer


def test_linear_splits_one_row_with_two_threads(two_threads, counted):
    layer = _layer(True)
    x = torch.randn(1, 1, 32)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert layer(x).shape == (1, 1, 64)
    assert len(counted) == 2


@pytest.mark.parametrize("shape", [(1, 2, 32), (2, 1, 32), (1, linear_mod.SPLIT_MAX_ROWS, 32)])
def test_linear_splits_up_to_the_row_limit(two_threads, counted, shape):
    layer = _layer(True)
    x = torch.randn(*shape)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert counted == [(shape[0] * shape[1], 32)]


@pytest.fixture
def onednn_calls(monkeypatch):
    calls = []
    real = linear_mod._ONEDNN_LINEAR
    if real is None:
        pytest.skip("this torch build has no oneDNN")
    monkeypatch.setattr(linear_mod, "_ONEDNN_LINEAR", lambda x, *a: calls.append(tuple(x.shape)) or real(x, *a))
    return calls


@pytest.mark.parametrize("storage", ["out_in", "in_out"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_sends_more_rows_to_onednn(two_threads, counted, onednn_calls, storage, bias):
    layer = Linear(32, 64, bias=bias).requires_grad_(False)
    if storage == "in_out":
        layer.weight = torch.nn.Parameter(layer.weight.t().contiguous().t(), requires_grad=False)
    layer.split_rows = True
    x = torch.randn(2, linear_mod.SPLIT_MAX_ROWS + 1, 32)
    exact = F.linear(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())
    got = layer(x)
    # (B, T, in) goes as rows, padded to their bucket (oneDNN keeps something per row count)
    assert onednn_calls == [(linear_mod.row_bucket(x.numel() // 32), 32)] and counted == []
    torch.testing.assert_close(got, F.linear(x, layer.weight, layer.bias))
    assert (got.double() - exact).abs().max() <= 4 * (F.linear(x, layer.weight, layer.bias).double() - exact).abs().max() + 1e-6


def test_onednn_only_for_float32_inference_on_the_cpu(onednn_calls):
    layer = Linear(32, 64)
    layer.split_rows = True
    x = torch.randn(1, 8, 32)
    layer(x)  # parameters need grad: F.linear, which has a backward
    with torch.no_grad():
        layer.bfloat16()(x.bfloat16())  # bfloat16: F.linear
        layer.float()(x)  # float32 inference: oneDNN
    assert onednn_calls == [(linear_mod.row_bucket(8), 32)]


def test_linear_keeps_f_linear_when_off(counted, onednn_calls):
    _layer(False)(torch.randn(1, 8, 32))
    assert counted == [] and onednn_calls == []


def test_linear_keeps_f_linear_on_one_thread_or_when_off(counted):
    assert torch.get_num_threads() == 1
    _layer(True)(torch.randn(1, 1, 32))
    torch.set_num_threads(2)
    try:
        _layer(False)(torch.randn(1, 1, 32))
    finally:
        torch.set_num_threads(1)
    assert counted == []


def test_onednn_rows_are_bucketed_so_memory_stays_flat():
    """oneDNN keeps something per distinct row count (~0.65 MiB each, never freed): 400
    no-cache steps used to grow the process by ~740 MiB. Rows are padded to a few dozen
    buckets, and the products stay those of F.linear."""
    import psutil

    from attncli.model.linear import _ONEDNN_LINEAR, onednn_product, row_bucket

    buckets = [row_bucket(m) for m in range(3, 8193)]
    assert len(set(buckets)) <= 32 and all(m <= b < m + 32 if m <= 128 else m <= b <= 1.25 * m
                                           for m, b in zip(range(3, 8193), buckets))
    if _ONEDNN_LINEAR is None:
        pytest.skip("this torch has no oneDNN")
    w = torch.randn(512, 192)
    proc = psutil.Process()
    onednn_product(torch.randn(40, 192), w, None)  # one-time setup
    before = proc.memory_info().rss
    for m in range(3, 403):
        x = torch.randn(m, 192)
        y = onednn_product(x, w, None)
        assert y.shape == (m, 512)
    torch.testing.assert_close(y, torch.nn.functional.linear(x, w))
    assert proc.memory_info().rss - before < 64 * 2**20
