"""Per-sample statistics: computations across the samples of a cohort."""
