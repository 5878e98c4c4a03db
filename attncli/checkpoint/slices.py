"""Reading one rank's slices of a checkpoint (tensor parallelism): the rows or columns of each
of our parameters that the rank holds (attncli.distributed.shard.Slice), out of the file
tensors that make the parameter, never the whole of any matrix.

A slice of a file tensor's rows is one contiguous read. A slice of its columns is read a
chunk of whole rows at a time (a row of a matrix is the unit a file stores contiguously),
keeping only the columns: the rank reads those matrices' bytes but holds 1/N of them.
"""

from __future__ import annotations

import torch

from attncli.checkpoint.plan import heads_to_parts
from attncli.checkpoint.reader import SafetensorsFile

Tensor = torch.Tensor


def read_slice(where: dict[str, SafetensorsFile], parts, slc, dest: Tensor, staging, heads: int) -> None:
    """Fill ``dest`` (this rank's part of one parameter, on its device, any storage) from
    ``parts`` ((name, src, file shape) in global row order, as the load plan lists them)."""
    spans, off = [], 0
    for name, src, want in parts:
        n = want[-1] if src.transpose else want[0]  # the part's rows of our (out, in) parameter
        spans.append((off, n))
        off += n
    pos = 0
    if slc.dim == 0:
        for a, b in slc.ranges:
            for (name, src, _), (o, n) in zip(parts, spans):
                lo, hi = max(a, o), min(b, o + n)
                if lo < hi:
                    block = _ours(where[name], name, src, (lo - o, hi - o), None, staging, heads)
                    dest[pos : pos + hi - lo].copy_(block)
                    pos += hi - lo
        if pos < dest.shape[0]:  # the vocabulary's last shard: rows past V
            dest[pos:].zero_()
        return
    (cols,) = slc.ranges
    for (name, src, _), (o, n) in zip(parts, spans):
        dest[pos : pos + n].copy_(_ours(where[name], name, src, None, cols, staging, heads))
        pos += n


def _ours(reader: SafetensorsFile, name: str, src, rows, cols, staging, heads: int) -> Tensor:
    """Rows ``rows`` and columns ``cols`` (None: all) of our (out, in) view of the file
    tensor, as a host tensor in the file's dtype."""
    if src.heads_interleaved:  # per-head fused rows (GPT-NeoX): reordered whole, then sliced
        full = heads_to_parts(reader.read(name), heads)
        full = full if rows is None else full[rows[0] : rows[1]]
        return full if cols is None else full[:, cols[0] : cols[1]]
    if src.transpose:  # stored (in, out) (GPT-2's Conv1D): our rows are its columns
        return _file_block(reader, name, cols, rows, staging).t()
    return _file_block(reader, name, rows, cols, staging)


def _file_block(reader: SafetensorsFile, name: str, rows, cols, staging) -> Tensor:
    """Rows ``rows`` (None: all) and columns ``cols`` (None: all) of a file tensor."""
    info = reader.tensors[name]
    r0, r1 = rows if rows is not None else (0, info.shape[0])
    if cols is None or len(info.shape) < 2 or (cols[0], cols[1]) == (0, info.shape[1]):
        return reader.read(name, rows=(r0, r1))
    k0, k1 = cols
    out = torch.empty((r1 - r0, k1 - k0, *info.shape[2:]), dtype=info.dtype)
    row_bytes = info.nbytes // info.shape[0]
    step = max(1, staging.nbytes // row_bytes)
    for s in range(r0, r1, step):
        e = min(r1, s + step)
        if row_bytes * (e - s) > staging.nbytes:  # one row larger than a chunk
            whole = reader.read(name, rows=(s, e))
        else:
            whole = staging.take()[: (e - s) * row_bytes].view(info.dtype).view(e - s, *info.shape[1:])
            reader.read(name, whole, rows=(s, e))
        out[s - r0 : e - r0] = whole[:, k0:k1]
    return out
