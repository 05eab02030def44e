"""Plots. Every function returns Axes or a Figure, accepts ``ax=`` and never calls ``plt.show()``."""

__all__: list[str] = []
