"""attncli: load, run, inspect and profile decoder-only transformers from safetensors.

Importing this package must stay cheap: no torch import here. The Python API
is reached lazily through ``__getattr__`` so that ``attncli --help`` is instant.
"""

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("attncli.loading", "load_model"),
    "ModelConfig": ("attncli.models.config", "ModelConfig"),
    "Tokenizer": ("attncli.tokenizer", "Tokenizer"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'attncli' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
