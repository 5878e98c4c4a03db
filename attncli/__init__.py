"""attncli: load, run, inspect and profile decoder-only transformers from safetensors.

Importing this package must stay cheap: no torch import here. The Python API
is reached lazily through ``__getattr__`` so that ``attncli --help`` is instant.
"""

__version__ = "0.1.0"

# Not `generate`: that name is the submodule attncli.generate (token-level API).
_LAZY = {
    "load_model": ("attncli.loading", "load_model"),
    "ModelConfig": ("attncli.models.config", "ModelConfig"),
    "Tokenizer": ("attncli.tokenizer", "Tokenizer"),
    "TextModel": ("attncli.textgen", "TextModel"),
    "generate_text": ("attncli.textgen", "generate_text"),
    "Generation": ("attncli.generate", "Generation"),
    "Sampling": ("attncli.sampling", "Sampling"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'attncli' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
