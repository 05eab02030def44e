"""Scoring of gene sets: the numerical kernels (arrays in, arrays out)."""
