"""chainrule: a small, exact and fast trainer for dense neural networks.

The math (layouts, losses, every gradient) is in docs/math.md; the public
class is :class:`Network`.
"""

from ._core import BusyError, DivergenceError, ModelFormatError, __version__
from .network import Network

__all__ = ["Network", "DivergenceError", "ModelFormatError", "BusyError", "__version__"]
