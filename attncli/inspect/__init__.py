"""`attncli inspect-mask`: the masks a model applies and the scores and weights behind
them (reports.py), the proof that nothing leaks (leakcheck.py, audit.py), dumps to
JSON / CSV / safetensors (dumps.py), and mask grids for the terminal (render.py)."""
