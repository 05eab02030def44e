"""Cell identity from marker genes: within-cell ranks, neighbour pooling, confident seeds and a classifier."""
