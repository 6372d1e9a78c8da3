"""jobledger's benchmarks: each module runs on its own (`.venv/bin/python bench/core.py ...`),
and `.venv/bin/python -m bench` runs them all in one go (bench/__main__.py)."""
