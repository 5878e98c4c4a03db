"""`attncli generate`: sampling (sampling.py), the token loop with or without a KV cache
(loop.py), the compiled decode step (compiled.py), text in and text out (text.py), and
what the terminal shows (view.py)."""
