"""Tidy tables pulled out of an annotated ``adata``."""

from ._tables import sample_table, scores

__all__ = ["sample_table", "scores"]
