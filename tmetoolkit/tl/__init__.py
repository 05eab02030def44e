"""Tools: scoring, annotation and tumour-microenvironment calls. Each writes into ``adata`` and returns ``None``."""

from ._score import score

__all__ = ["score"]
