"""Maintainers' tools: run, clean and check the notebooks (``python -m tools.notebooks``), check the exercises."""
