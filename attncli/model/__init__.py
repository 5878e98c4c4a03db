"""The decoder and everything it computes with: config, transformer, linear products and
their weight layouts, attention (masks and backends), the KV cache. Families
(``families/``) turn Hugging Face config.json files and weight names into this model.
This package never reads files: attncli.checkpoint does."""
