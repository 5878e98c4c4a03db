"""attncli: load, run, inspect and profile decoder-only transformers from safetensors.

Importing this package must stay cheap: no torch import here. The Python API
is reached lazily through ``__getattr__`` so that ``attncli --help`` is instant.
"""

__version__ = "0.1.0"

# Not `generate`: that name is the package attncli.generate (token-level API:
# attncli.generate.loop.generate).
_LAZY = {
    "load_model": ("attncli.checkpoint.load", "load_model"),
    "build_model": ("attncli.model.build", "build_model"),
    "save_pretrained": ("attncli.checkpoint.save", "save_pretrained"),
    "ModelConfig": ("attncli.model.config", "ModelConfig"),
    "KVCache": ("attncli.model.cache", "KVCache"),
    "Tokenizer": ("attncli.checkpoint.tokenizer", "Tokenizer"),
    "TextModel": ("attncli.generate.text", "TextModel"),
    "generate_text": ("attncli.generate.text", "generate_text"),
    "Generation": ("attncli.generate.loop", "Generation"),
    "Sampling": ("attncli.generate.sampling", "Sampling"),
    "preset_config": ("attncli.model.presets", "preset_config"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'attncli' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
