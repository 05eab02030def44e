"""Simulated tumours with known truth, Visium-like spots pooled from them, and loaders for the local real data."""

from ._fields import simulate_fields
from ._local import data_dir, load
from ._simulate import simulate
from ._spots import to_spots

__all__ = ["data_dir", "load", "simulate", "simulate_fields", "to_spots"]
