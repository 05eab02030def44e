"""Plots. Every function returns Axes or a Figure, accepts ``ax=`` and never calls ``plt.show()``."""

from ._embedding import embedding
from ._gates import gates
from ._markers import markers
from ._spatial import spatial
from ._summaries import (
    checkpoints,
    compare_groups,
    composition,
    immune_phenotype,
    immunosuppression,
    resistance_profile,
    scores,
)

__all__ = [
    "checkpoints",
    "compare_groups",
    "composition",
    "embedding",
    "gates",
    "immune_phenotype",
    "immunosuppression",
    "markers",
    "resistance_profile",
    "scores",
    "spatial",
]
