"""`attncli profile`: what a sweep runs (spec.py), the measurements (sweep.py), analytic
FLOPs and bytes (flops.py), growth fits (fit.py), the result document (document.py),
tables and charts (tables.py), PNG plots (plot.py), and the command's flow (run.py).
Nothing here but run.py and tables.py prints."""
