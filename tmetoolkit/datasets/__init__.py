"""Simulated tumours with known truth, and Visium-like spots pooled from them."""

from ._simulate import simulate
from ._spots import to_spots

__all__ = ["simulate", "to_spots"]
