"""chainrule: a small, exact and fast trainer for dense neural networks.

The math (layouts, losses, every gradient) is in docs/math.md; the public
class is :class:`Network`. Its optimizers and schedules are in
:mod:`chainrule.optim`, scikit-learn estimators in :mod:`chainrule.sklearn`,
the ONNX exporter in :mod:`chainrule.onnx`.
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
from . import optim  # noqa: E402

__all__ = ["Network", "DivergenceError", "ModelFormatError", "BusyError", "set_num_threads", "get_num_threads",
           "ACTIVATIONS", "LOSSES", "optim", "__version__"]

# The compiled module defines the exceptions (cpp/bindings/module.cpp
# translates the core's C++ exceptions into them); their documentation lives
# here, with the rest of the Python API's.
DivergenceError.__doc__ = """Training or a computation reached a non-finite value (a ``FloatingPointError``).

Raised by ``fit`` and ``sgd_step`` when a step would make the cost or a
parameter non-finite: the parameters keep their values from before that
step (lower the learning rate, or scale the inputs). Raised by ``predict``,
``cost`` and ``gradients`` when a result overflows although the parameters
and the inputs are finite (scale the inputs).

Examples
--------
>>> net = cr.Network([1, 1], output="identity", loss="mse", seed=0)
>>> net.sgd_step(np.array([[1e300]]), np.array([0.0]), lr=1.0)
Traceback (most recent call last):
    ...
chainrule._core.DivergenceError: the cost is inf (not finite): ...
>>> isinstance(cr.DivergenceError(), FloatingPointError)
True
"""

ModelFormatError.__doc__ = """A file that :meth:`Network.load` reads is not a valid model file (a ``ValueError``).

Wrong magic number or version, a truncated file, trailing bytes, an
inconsistent header, a checksum that does not match: the message says which
(docs/model-file.md, "Loading: what is checked").

Examples
--------
>>> import os, tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     path = os.path.join(folder, "not-a-model.crnn")
...     with open(path, "wb") as file:
...         _ = file.write(b"junk")
...     try:
...         cr.Network.load(path)
...     except cr.ModelFormatError as error:
...         print(str(error).split(": ")[-1])
it ends inside the magic number
"""

BusyError.__doc__ = """A network is already being trained or differentiated (a ``RuntimeError``).

``fit``, ``sgd_step`` and ``gradients`` share one training workspace per
network: a second such call while one runs (from another thread, or from a
``fit`` callback) raises this rather than waiting. ``predict`` and ``cost``
never raise it.

Examples
--------
>>> net = cr.Network([1, 1], output="identity", loss="mse", seed=0)
>>> X, y = np.zeros((2, 1)), np.zeros(2)
>>> net.fit(X, y, epochs=1, callback=lambda epoch, cost: net.gradients(X, y))
Traceback (most recent call last):
    ...
chainrule._core.BusyError: the network is being trained or differentiated in another thread; ...
"""


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads for training and prediction.

    Only large work runs on several threads: a large matrix product is cut
    into one block of rows or columns per thread, computed by the GEMM
    library on that thread; large elementwise work (activations, the SGD
    update) and the gathering of a large shuffled batch, into one range per
    thread; ``predict`` on a small network, into ranges of records. Each
    value is computed as on one thread, so results do not depend on ``n``.
    Small layers stay on the calling thread. Process-wide; the default is
    all cores (or ``OPENBLAS_NUM_THREADS``). Call it between trainings, not
    while another thread trains.

    Parameters
    ----------
    n : int
        The thread count, >= 1.

    Raises
    ------
    TypeError
        ``n`` is not an integer.
    ValueError
        ``n`` is below 1.

    See Also
    --------
    get_num_threads

    Examples
    --------
    >>> before = cr.get_num_threads()
    >>> cr.set_num_threads(1)
    >>> cr.get_num_threads()
    1
    >>> cr.set_num_threads(before)
    """
    _core.set_num_threads(_integer("n", n, 1))


def get_num_threads() -> int:
    """The thread count set by :func:`set_num_threads` (default: all cores).

    Returns
    -------
    int
        At most this many threads train and predict.

    Examples
    --------
    >>> cr.get_num_threads() >= 1
    True
    """
    return _core.get_num_threads()
