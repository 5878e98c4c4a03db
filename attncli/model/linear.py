"""The model's linear layer: nn.Linear, except on the CPU, where products of one or two rows
(decode) are split across the cores and products of more rows (no-cache decode, prefill) go
to oneDNN's matrix product instead of MKL's.

A matrix-vector product through MKL runs on one core, and one core of the Zen 3 CPU this
project runs on streams ~15-22 GB/s of the ~37 GB/s that two read. torch.bmm does share
its batch across the intra-op threads, so the product is cut into as many blocks as
there are threads, each a plain view of the stored matrix (no copy, no new storage):
  - (out, in) storage: blocks of rows, each giving a block of output columns;
  - (in, out) storage: blocks of the inner dimension; the partial outputs are summed.
Measured with 2 threads, one row, each matrix read from memory (GB/s, one product -> split):
    GPT-2 QKV (768 -> 2304) 17.6 -> 22.9, MLP up 17.7 -> 23.4, MLP down 15.2 -> 26.4,
    LM head (768 -> 50257) 21.9 -> 27.9; SmolLM2-135M gate/up 17.8 -> 29.3,
    down 14.0 -> 24.1, LM head (576 -> 49152) 21.5 -> 36.6.
oneDNN (torch.ops.mkldnn._linear_pointwise, the op inductor's CPU backend emits) takes the
same (out, in) parameter in either storage and uses both cores from a few rows up. Whole
forwards, 2 threads, ms for MKL / split / oneDNN (examples/bench_products.py):
    rows          1            2             3             8             64             512
    SmolLM-135M   36/26/37     50-59/32/37-48 60/33/36     61/52/45      144/127/114    931/928/810
    GPT-2         27/18/28     38/25/27      51/33/26      51/40/32      118/102/87     577/617/516
So one and two rows are split (SPLIT_MAX_ROWS), more go to oneDNN. Only the summation
order changes (split partial sums; oneDNN's blocking), well inside the parity tolerances.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attncli.model.layout import is_transposed

Tensor = torch.Tensor


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


SPLIT_MAX_ROWS = 2  # at 3 rows split and oneDNN trade places between shapes; from 4 oneDNN wins


class Linear(nn.Linear):
    split_rows = False  # set per layer by attncli.model.layout.set_split
    tp = None  # tensor parallel, a row-sharded product (attention out, MLP down): partial sums, summed over ranks

    def forward(self, x: Tensor) -> Tensor:
        if self.tp is not None:  # the bias (replicated) added once, after the sum
            y = self.tp.all_reduce(F.linear(x, self.weight))
            return y if self.bias is None else y + self.bias
        if self.split_rows and not _compiling():
            if x.numel() <= SPLIT_MAX_ROWS * self.in_features:
                ways = torch.get_num_threads()
                if ways > 1 and x.numel():
                    y = split_product(x.reshape(-1, self.in_features), self.weight, self.bias, ways)
                    if y is not None:
                        return y.view(*x.shape[:-1], self.out_features)
            elif _onednn_fits(x, self.weight):
                return onednn_product(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def _onednn_op():
    """torch's oneDNN linear (what inductor's CPU backend calls), or None in a build without it."""
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_LINEAR = _onednn_op()


def _onednn_fits(x: Tensor, weight: Tensor) -> bool:
    """float32 on the CPU, inference only (the op has no backward). One product alone,
    oneDNN against F.linear: 1.07-1.31x for 256-1,024 rows of GPT-2 and SmolLM2 matrices."""
    return (_ONEDNN_LINEAR is not None and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))


def row_bucket(m: int) -> int:
    """The row count oneDNN is called with for ``m`` rows: rounded up to 32, and past 128 rows
    to a quarter of the power of two below (at most a quarter more work). oneDNN keeps
    something for every distinct row count and never frees it (measured: ~0.65 MiB per count;
    400 no-cache decode steps of the embedded model peaked at +738 MiB); a few dozen buckets
    bound that, and the padded rows cost less than the per-shape setup they save."""
    step = max(32, 1 << max(0, m.bit_length() - 3))
    return -(-m // step) * step


def onednn_product(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (..., in) @ weight (out, in)^T (+ bias) through oneDNN, its rows padded to a bucket."""
    rows = x.reshape(-1, x.shape[-1])  # (M, in)
    m = rows.shape[0]
    padded = row_bucket(m)
    if padded != m:
        rows = torch.cat((rows, rows.new_zeros(padded - m, rows.shape[1])))
    y = _ONEDNN_LINEAR(rows, weight, bias, "none", [], "")[:m]  # (M, out)
    return y.view(*x.shape[:-1], weight.shape[0])


def split_product(x: Tensor, weight: Tensor, bias: Tensor | None, ways: int) -> Tensor | None:
    """x (M, in) times weight (out, in) seen as stored, in ``ways`` blocks that torch.bmm
    runs on separate threads. None when the matrix does not split evenly that way."""
    m, (out_f, in_f) = x.shape[0], weight.shape
    if is_transposed(weight):  # contiguous (in, out): split the inner dimension
        if in_f % ways:
            return None
        blocks = weight.t().view(ways, in_f // ways, out_f)  # (ways, in/ways, out)
        xs = x.view(m, ways, in_f // ways).transpose(0, 1)  # (ways, M, in/ways)
        y = torch.bmm(xs, blocks).sum(0)  # partial products (ways, M, out), summed: (M, out)
        return y.add_(bias) if bias is not None else y
    if not weight.is_contiguous() or out_f % ways:
        return None
    blocks = weight.view(ways, out_f // ways, in_f).transpose(1, 2)  # (ways, in, out/ways)
    xs = x.expand(ways, m, in_f)
    if bias is not None:
        y = torch.baddbmm(bias.view(ways, 1, out_f // ways), xs, blocks)
    else:
        y = torch.bmm(xs, blocks)  # (ways, M, out/ways): column blocks of the output
    return y.view(1, out_f) if m == 1 else y.transpose(0, 1).reshape(m, out_f)
