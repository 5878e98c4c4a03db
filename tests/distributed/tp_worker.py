"""One rank of the tensor-parallel parity run (tests/distributed/test_tp.py), launched by
torchrun: every checkpoint folder given, loaded as this rank's part; greedy tokens of a
left-padded batch with and without the cache on both backends, the logits of one padded
forward, and the bytes of weights this rank holds. Rank 0 writes them as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from attncli.checkpoint.load import load_model  # noqa: E402
from attncli.distributed.group import current  # noqa: E402
from attncli.generate.loop import generate  # noqa: E402

PROMPTS = [[5, 17, 42, 9, 77, 31], [7, 8]]  # left padding in the batch
NEW = 6


def run(folder: str) -> dict:
    lm = load_model(folder, device="cpu", dtype="float32")
    out = {"tokens": {}}
    for backend in ("sdpa", "eager"):
        for cache in (True, False):
            gen = generate(lm.model, PROMPTS, max_new_tokens=NEW, use_cache=cache, backend=backend)
            for _ in gen:
                pass
            out["tokens"][f"{backend}/{'cache' if cache else 'no-cache'}"] = [r.tokens for r in gen.rows]
    ids = torch.tensor([[5, 17, 42, 9, 77, 31], [0, 0, 0, 0, 7, 8]])
    mask = (torch.arange(6) >= torch.tensor([[0], [4]])).long()
    with torch.inference_mode():
        out["logits"] = lm.model(ids, attention_mask=mask).logits.tolist()
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in lm.model.parameters()}
    out["weight_bytes"] = sum(storages.values())
    return out


def main() -> None:
    target, folders = sys.argv[1], sys.argv[2:]
    tp = current()
    assert tp is not None and tp.world == 2, "launch with torchrun --nproc-per-node 2"
    results = {Path(f).name: run(f) for f in folders}
    if tp.primary:
        Path(target).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
