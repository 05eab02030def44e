"""Fixed palettes, so the same label has the same colour in every figure and report."""

from __future__ import annotations

from .. import _keys


def lineage_colors() -> dict[str, str]:
    return _keys.label_colors()


def state_colors() -> dict[str, str]:
    return _keys.state_label_colors()


def phenotype_colors() -> dict[str, str]:
    return dict(_keys.PHENOTYPE_COLORS)
