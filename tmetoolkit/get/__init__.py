"""Tidy tables pulled out of an annotated ``adata``."""

from ._markers import markers
from ._tables import region_table, sample_table, scores

__all__ = ["markers", "region_table", "sample_table", "scores"]
