"""Data: raw readers -> one Interactions table -> frozen next-item samples (see ``dataset.py``)."""
