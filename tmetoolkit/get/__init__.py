"""Tidy tables pulled out of an annotated ``adata``."""

from ._tables import region_table, sample_table, scores

__all__ = ["region_table", "sample_table", "scores"]
