"""The model's linear layer: nn.Linear, except that products with few rows (decode, short
prompts) can be split across the CPU's cores.

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
With more rows MKL's own product gets better and splitting pays less: a whole forward was
faster split at 8 to 160 rows (SmolLM-135M shape 1.37x at 8, 1.09-1.11x at 128-160; GPT-2
1.28x at 8, 0.99-1.04x at 64-160) and slower from 256 (0.96-0.99x; 0.89-0.97x at 512), so
products of up to SPLIT_MAX_ROWS rows are split. Only the summation order of the
(in, out) split changes (partial sums, then their sum), well inside the parity tolerances.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attncli.layout import is_transposed

Tensor = torch.Tensor


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


SPLIT_MAX_ROWS = 192  # between the last measured gain (160 rows) and the first loss (256)


class Linear(nn.Linear):
    split_rows = False  # set per layer by attncli.layout.set_split

    def forward(self, x: Tensor) -> Tensor:
        if self.split_rows and x.numel() <= SPLIT_MAX_ROWS * self.in_features and not _compiling():
            ways = torch.get_num_threads()
            if ways > 1 and x.numel():
                y = split_product(x.reshape(-1, self.in_features), self.weight, self.bias, ways)
                if y is not None:
                    return y.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)


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
