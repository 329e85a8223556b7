"""Input layouts: one module per way of keeping episodes, each an InputLayout (layout.py)."""
