"""Checkpoints on disk: finding a model's files (files.py), reading safetensors without
numpy (reader.py), checking names and shapes from the headers (plan.py), loading onto a
device (load.py), saving back in the Hugging Face layout (save.py), and the tokenizer."""
