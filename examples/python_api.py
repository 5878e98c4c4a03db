"""Use attncli from Python: load a safetensors checkpoint and score the next token.

    python examples/python_api.py [PATH/TO/MODEL] ["The cat sat on the"]

Without a path it uses the model attncli ships (the one every command defaults to).
"""

import sys

import torch

from attncli import Tokenizer, load_model


def main(path: str | None = None, prompt: str = "The cat sat on the") -> None:
    if path is None:
        from attncli.checkpoint.files import default_model_path

        path = default_model_path()
    lm = load_model(path, device="auto", dtype="auto")
    tok = Tokenizer.from_dir(lm.files.folder)
    ids = torch.tensor([tok.encode(prompt)], device=lm.device)  # (1, T)
    with torch.no_grad():
        logits = lm.model(ids, backend="sdpa", last_only=True).logits[0, -1]  # (V,)
    probs = torch.softmax(logits.float(), dim=-1)
    top = torch.topk(probs, 5)
    print(f"{lm.config.arch}, {sum(p.numel() for p in lm.model.parameters()):,} parameters on {lm.device}")
    print(f"next token after {prompt!r}:")
    for p, i in zip(top.values.tolist(), top.indices.tolist()):
        print(f"{p:6.3f}  {tok.token_strings([i])[0]!r}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
