"""Simulated tumours with known truth, and loaders for local real data."""

from ._simulate import simulate

__all__ = ["simulate"]
