"""Preprocessing: check what the data hold before scoring."""

from ._check import InputReport, check_input

__all__ = ["InputReport", "check_input"]
