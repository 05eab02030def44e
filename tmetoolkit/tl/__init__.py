"""Tools: scoring, annotation and tumour-microenvironment calls. Each writes into ``adata`` and returns ``None``."""

from ._annotate import annotate
from ._checkpoints import checkpoints
from ._compare import compare_groups
from ._compartments import compartments
from ._phenotype import immune_phenotype
from ._resistance import mechanisms, resistance_profile
from ._score import score
from ._suppression import immunosuppression

__all__ = ["annotate", "checkpoints", "compare_groups", "compartments", "immune_phenotype", "immunosuppression",
           "mechanisms", "resistance_profile", "score"]
