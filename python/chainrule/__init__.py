"""chainrule: a small, exact and fast trainer for dense neural networks.

The math (layouts, losses, every gradient) is in docs/math.md; the public
class is :class:`Network`.
"""


def _preload_openblas() -> None:
    # The compiled core links libscipy_openblas.so (from the scipy-openblas32
    # package) and finds it through an RPATH to ../scipy_openblas32/lib. Where
    # the two packages sit in different site directories that RPATH misses, so
    # load the library by its full path first: the dynamic loader then finds
    # the soname already present. A build without OpenBLAS needs none of this.
    try:
        import scipy_openblas32
    except ImportError:
        return
    import ctypes
    import os

    try:
        ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True)))
    except (AttributeError, IndexError, OSError):  # no such file: let the RPATH have its chance
        pass


_preload_openblas()
del _preload_openblas

from . import _core  # noqa: E402
from ._core import ACTIVATIONS, LOSSES, BusyError, DivergenceError, ModelFormatError, __version__  # noqa: E402
from .network import Network, _integer  # noqa: E402

__all__ = ["Network", "DivergenceError", "ModelFormatError", "BusyError", "set_num_threads", "get_num_threads",
           "ACTIVATIONS", "LOSSES", "__version__"]


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads (>= 1) for training and prediction.

    Only large work runs on several threads: a large matrix product is cut
    into one block of rows or columns per thread, computed by the GEMM
    library on that thread; large elementwise work (activations, the SGD
    update) and the gathering of a large shuffled batch, into one range per
    thread; ``predict`` on a small network, into ranges of records. Each
    value is computed as on one thread, so results do not depend on ``n``.
    Small layers stay on the calling thread. Process-wide; the default is
    all cores (or ``OPENBLAS_NUM_THREADS``). Call it between trainings, not
    while another thread trains.
    """
    _core.set_num_threads(_integer("n", n, 1))


def get_num_threads() -> int:
    """The thread count set by :func:`set_num_threads` (default: all cores)."""
    return _core.get_num_threads()
