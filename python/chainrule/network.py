"""The Python face of the C++ network: argument checks and NumPy views.

The work (forward, backward, SGD, the training loop) happens in the compiled
core; this module only turns Python arguments into what the core expects.
"""

from __future__ import annotations

import numbers
import operator
import os
import sys
from typing import Any, Callable, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import _core, optim
from ._progress import EpochProgress

__all__ = ["Network"]


class SupportsDLPack(Protocol):
    """An array that NumPy can view through DLPack (``__dlpack__``): a CPU torch tensor, a JAX array, ..."""

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any: ...


# The arrays Network's methods read: NumPy arrays (or DLPack arrays in CPU
# memory) of the network's dtype, C-contiguous. The dtype and the layout are
# checked at run time; nothing is converted.
ArrayIn = Union[npt.NDArray[np.floating[Any]], SupportsDLPack]
# A file name: what os.fspath accepts.
PathLike = Union[str, bytes, os.PathLike[str], os.PathLike[bytes]]
FloatArray = npt.NDArray[np.floating[Any]]

_CORE_CLASSES = {"float32": _core.NetworkFloat32, "float64": _core.NetworkFloat64}


def _dtype_name(dtype, argument: str = "dtype", also: str = "") -> str:
    """'float32' or 'float64' for dtype, or a ValueError naming `argument` (`also`: other values it takes)."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _CORE_CLASSES:
        raise ValueError(f"{argument} must be 'float32' or 'float64'{also}, got {dtype!r}")
    return name


# Python checks what only Python can see: the type, and whether an integer
# fits the core's unsigned 64-bit counts (a signed 64-bit integer in the
# bindings). The value rules (batch_size >= 1, n_iter_no_change >= 1, a layer
# of at least one unit) are the core's, with the core's messages.
_INT64_MAX = 2**63 - 1


def _integer(name: str, value, minimum: int = 0, least: int | None = None) -> int:
    """An integer >= minimum. A core count cannot carry a negative value to
    the core, so it is refused here, naming the core's own least value
    (`least`: batch_size 1, say); the core refuses the values in between."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum if least is None else least}, got {value}")
    return value


def _count(name: str, value, least: int = 0) -> int:
    """An integer argument that the core counts with (epochs, batch_size, n_iter_no_change, layer sizes)."""
    value = _integer(name, value, 0, least)
    if value > _INT64_MAX:
        raise ValueError(f"{name} must be < 2**63, got {value}")
    return value


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _seed(name: str, seed) -> int:
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    seed = _integer(name, seed, 0)
    if seed >= 2**64:
        raise ValueError(f"{name} must be < 2**64, got {seed}")
    return seed


def _in_place(value):
    """A DLPack array (a CPU torch tensor, a JAX array, ...) as a NumPy view of its memory; anything else as it is.

    np.from_dlpack shares the memory (no copy); the core then applies the same
    rules as to any array (dtype, C order), so nothing is converted silently.
    A device other than the CPU is refused with np.from_dlpack's error.
    """
    if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack__"):
        return value
    try:
        return np.from_dlpack(value)
    except (BufferError, RuntimeError, TypeError, ValueError) as error:
        raise TypeError(f"a {type(value).__name__} can be read in place only from CPU memory through DLPack: "
                        f"{error}") from error


def _is_sparse(value) -> bool:
    """Whether value is a scipy.sparse matrix or array (scipy is never imported here: without it, none exists)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)


def _records(X):
    """X as the core reads it: a CSR matrix in place, another scipy.sparse format as a CSR copy, else _in_place(X).

    scipy.sparse csr_matrix and csr_array are read in place (their data,
    indices and indptr arrays); CSC, COO and the other formats are converted
    to CSR first, a copy, as scikit-learn's estimators do. A plain ndarray,
    the common case, returns at the first test: a single-record predict is
    about a microsecond, and the tests below took a fifth of it.
    """
    if type(X) is np.ndarray:
        return X
    if not _is_sparse(X):
        return _in_place(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_records, n_features), got a {X.ndim}-D sparse {type(X).__name__}")
    return X if X.format == "csr" else X.tocsr()


def _path(path) -> bytes:
    """`path` as the bytes the operating system sees (os.fsencode), for the core.

    Bytes reach the core unchanged, so any POSIX file name works, UTF-8 or not
    (a str that os.fsdecode made from such a name encodes back to it).
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str, bytes or os.PathLike, got {type(path).__name__}") from None
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError as error:
        raise ValueError(f"path {path!r} cannot be encoded as a file name: {error.reason}") from None
    if b"\0" in encoded:  # the C library would use the name before it
        raise ValueError(f"path {path!r} holds a NUL byte, which no file name can hold")
    return encoded


def _name(argument: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a name (str), got {type(value).__name__}")
    return value


class Network:
    """A dense feed-forward network trained by SGD, computed in C++.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_0, n_1, ..., n_L]``: inputs, hidden layer widths, outputs.
    activation : str or sequence of str
        Activation of the hidden layers ('sigmoid', 'identity', 'tanh',
        'relu', 'leaky_relu': the names in ``chainrule.ACTIVATIONS`` but
        'softmax'), or one name per hidden layer.
    output : str
        Activation of the output layer: one of those, or 'softmax' (row-wise,
        only with loss='cce', over at least 2 outputs).
    loss : {'bce', 'mse', 'cce'}
        Binary cross-entropy (needs a sigmoid output), squared error, or
        categorical cross-entropy (needs a softmax output and targets whose
        rows sum to 1), summed over the outputs of a record; the cost is the
        mean over records.
    dtype : {'float32', 'float64'}
        The dtype of the parameters and of every array passed in.
    seed : int or None
        Seeds the Glorot-uniform (He-uniform for relu and leaky_relu) initialisation. None
        draws a seed from the operating system.

    Raises
    ------
    TypeError
        ``layer_sizes`` is not a sequence of integers, or a name is not a str.
    ValueError
        Fewer than two sizes, a size below 1, an unknown name, the wrong
        number of hidden activations, a loss that does not fit the output
        (bce needs sigmoid, cce softmax), or a seed outside [0, 2**64).
    MemoryError
        The parameters do not fit in memory.

    See Also
    --------
    chainrule.sklearn.MLPClassifier : the scikit-learn estimator over a Network.

    Notes
    -----
    Weights follow ``z = W a + b``: ``weights[l]`` has shape
    ``(layer_sizes[l + 1], layer_sizes[l])``. Arrays passed in are read in
    place and must be C-contiguous of the network's dtype; nothing is
    converted silently. The equations are in docs/math.md.

    Sparse X: ``fit``, ``predict``, ``cost`` and ``gradients`` also take a
    scipy.sparse matrix or array. A CSR one (``csr_matrix``, ``csr_array``)
    is read in place, never densified: its ``data`` must have the network's
    dtype, its ``indices`` and ``indptr`` int32 or int64; the first layer's
    product runs over its stored entries alone. Other formats (CSC, COO, ...)
    are converted to CSR first, a copy, as scikit-learn does. Unsorted
    column indices are fine, and a column stored twice in a row counts as the
    sum of its entries, as in scipy. The results equal those on
    ``X.toarray()`` within rounding (the sums run in another order), with the
    same bits for any thread count. ``sgd_step`` takes dense X only.

    Examples
    --------
    >>> import numpy as np
    >>> import chainrule as cr
    >>> net = cr.Network([2, 4, 1], activation="tanh", output="sigmoid", loss="bce", seed=0)
    >>> net
    Network([2, 4, 1], activation='tanh', output='sigmoid', loss='bce', dtype='float64')
    >>> net.n_params, [w.shape for w in net.weights], [b.shape for b in net.biases]
    (17, [(4, 2), (1, 4)], [(4,), (1,)])
    >>> net.activations, net.dtype
    (('tanh', 'sigmoid'), dtype('float64'))
    """

    def __init__(self, layer_sizes: Sequence[int], activation: Union[str, Sequence[str]] = "sigmoid",
                 output: str = "sigmoid", loss: str = "bce", dtype: npt.DTypeLike = "float64",
                 seed: Optional[int] = None) -> None:
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
            raise TypeError(f"layer_sizes must be a sequence of integers, got {type(layer_sizes).__name__}")
        sizes = [_integer(f"layer_sizes[{i}]", n, 0, least=1) for i, n in enumerate(layer_sizes)]
        for i, n in enumerate(sizes):
            if n > _INT64_MAX:  # the core would refuse it as too large to allocate anyway
                raise MemoryError(f"layer_sizes[{i}] = {n}: a layer that large cannot be allocated")
        num_hidden = max(len(sizes) - 2, 0)  # fewer than two sizes: the core says what it needs
        if isinstance(activation, str):
            hidden = [activation] * num_hidden
        else:
            try:
                names = list(activation)
            except TypeError:
                raise TypeError(f"activation must be a name (str) or a sequence of names, one per hidden layer, "
                                f"got {type(activation).__name__}") from None
            hidden = [_name(f"activation[{i}]", a) for i, a in enumerate(names)]
            if len(hidden) != num_hidden:
                raise ValueError(f"activation: expected {num_hidden} names (one per hidden layer), "
                                 f"got {len(hidden)}")
        core_class = _CORE_CLASSES[_dtype_name(dtype)]
        self._attach(core_class(sizes, hidden + [_name("output", output)], _name("loss", loss),
                                _seed("seed", seed)))

    def _attach(self, core) -> None:
        self._core = core
        num_layers = len(core.layer_sizes) - 1
        self._weights = tuple(core.weight(l) for l in range(num_layers))
        self._biases = tuple(core.bias(l) for l in range(num_layers))

    @classmethod
    def _from_core(cls, core) -> "Network":
        network = cls.__new__(cls)
        network._attach(core)
        return network

    # -- structure ---------------------------------------------------------

    @property
    def layer_sizes(self) -> Tuple[int, ...]:
        """``(n_0, n_1, ..., n_L)``: inputs, hidden widths, outputs."""
        return tuple(self._core.layer_sizes)

    @property
    def activations(self) -> Tuple[str, ...]:
        """The activation of each layer, the output's last."""
        return tuple(self._core.activations)

    @property
    def loss(self) -> str:
        """The loss: 'bce', 'mse' or 'cce'."""
        return self._core.loss

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the parameters and of every array passed in: float32 or float64."""
        return np.dtype(self._core.dtype)

    @property
    def n_params(self) -> int:
        """The number of parameters, weights and biases together."""
        return self._core.num_params

    @property
    def weights(self) -> Tuple[FloatArray, ...]:
        """Writable views of W_1..W_L, shape (n_l, n_{l-1}), sharing the network's memory."""
        return self._weights

    @property
    def biases(self) -> Tuple[FloatArray, ...]:
        """Writable views of b_1..b_L, shape (n_l,), sharing the network's memory."""
        return self._biases

    def __repr__(self) -> str:
        hidden = list(self.activations[:-1])
        activation = hidden[0] if hidden and all(a == hidden[0] for a in hidden) else hidden
        if not hidden:
            activation = "sigmoid"
        return (f"Network({list(self.layer_sizes)}, activation={activation!r}, output={self.activations[-1]!r}, "
                f"loss={self.loss!r}, dtype={self.dtype.name!r})")

    # -- computation -------------------------------------------------------

    # predict, cost, gradients, sgd_step and fit never return inf or NaN. A
    # parameter made non-finite through the writable views is refused with a
    # ValueError naming it; a result that overflows although the parameters
    # and inputs are finite (inputs of 1e30 through identity layers, say)
    # raises DivergenceError (a FloatingPointError): scale the inputs.

    def predict(self, X: ArrayIn) -> FloatArray:
        """The network's output A_L for the records of ``X``.

        Parameters
        ----------
        X : ndarray or scipy.sparse matrix of shape (n_records, n_features)
            C-contiguous, of the network's dtype (or a DLPack array such as a
            CPU torch tensor), read in place.

        Returns
        -------
        ndarray of shape (n_records, n_outputs)
            A new array of the network's dtype.

        Raises
        ------
        TypeError
            ``X`` is not an array, or has another dtype than the network's.
        ValueError
            ``X`` is not 2-D and C-contiguous, has the wrong number of
            columns or a non-finite value, or a parameter is non-finite.
        DivergenceError
            The output overflows although the parameters and ``X`` are finite.

        Examples
        --------
        >>> net = cr.Network([3, 5, 2], activation="relu", output="identity", loss="mse", seed=0)
        >>> X = np.zeros((4, 3))
        >>> net.predict(X).shape
        (4, 2)
        >>> bool(np.all(net.predict(X) == 0))  # the biases start at zero
        True
        """
        return self._core.predict(_records(X))

    def cost(self, X: ArrayIn, y: ArrayIn, sample_weight: Optional[npt.ArrayLike] = None) -> float:
        """The mean record loss over ``(X, y)`` at the current parameters.

        Parameters
        ----------
        X : ndarray or scipy.sparse matrix of shape (n_records, n_features)
            Read in place, as in :meth:`predict`.
        y : ndarray of shape (n_records, n_outputs), or (n_records,) for one output
            The targets, of the network's dtype, C-contiguous; in [0, 1] for
            bce, rows summing to 1 for cce.
        sample_weight : array-like of shape (n_records,), optional
            One weight per record, finite, >= 0, not all 0: the cost is then
            ``sum_i s_i L_i / sum_i s_i``.

        Returns
        -------
        float
            The cost (docs/math.md, "Loss of a record, cost of a batch").

        Raises
        ------
        TypeError, ValueError, DivergenceError
            As for :meth:`predict`, for ``X``, ``y`` and ``sample_weight``
            (a shape that does not match, a target outside the loss's range).

        Examples
        --------
        >>> net = cr.Network([2, 1], output="identity", loss="mse", seed=0)
        >>> net.weights[0][:] = [[1.0, 2.0]]
        >>> X = np.array([[1.0, 1.0], [0.0, 1.0]])
        >>> net.cost(X, np.array([3.0, 0.0]))  # ((3 - 3)**2 + (2 - 0)**2) / 2
        2.0
        >>> net.cost(X, np.array([3.0, 0.0]), sample_weight=[3.0, 1.0])  # (0 * 3 + 4 * 1) / 4
        1.0
        """
        X, y = _records(X), _in_place(y)
        return self._core.cost(X, y, self._weights_for(X, sample_weight))

    def gradients(self, X: ArrayIn, y: ArrayIn,
                  sample_weight: Optional[npt.ArrayLike] = None) -> list[Tuple[FloatArray, FloatArray]]:
        """The gradient of ``cost(X, y, sample_weight)`` with respect to each layer's parameters.

        The parameters do not change (docs/math.md, "Backward pass").

        Parameters
        ----------
        X, y, sample_weight
            As for :meth:`cost`.

        Returns
        -------
        list of (ndarray, ndarray)
            ``[(dW_1, db_1), ..., (dW_L, db_L)]``, new arrays with the shapes
            of :attr:`weights` and :attr:`biases`.

        Raises
        ------
        TypeError, ValueError, DivergenceError
            As for :meth:`cost`.
        BusyError
            Another thread is training or differentiating this network.

        Examples
        --------
        >>> net = cr.Network([2, 1], output="identity", loss="mse", seed=0)
        >>> net.weights[0][:] = [[1.0, 2.0]]
        >>> (dW, db), = net.gradients(np.array([[1.0, 1.0]]), np.array([0.0]))
        >>> dW.tolist(), db.tolist()  # 2 (a - y) x and 2 (a - y), with a = 3
        ([[6.0, 6.0]], [6.0])
        """
        X, y = _records(X), _in_place(y)
        return self._core.gradients(X, y, self._weights_for(X, sample_weight))

    def cost_and_gradient(self, X: ArrayIn, y: ArrayIn, sample_weight: Optional[npt.ArrayLike] = None,
                          alpha: float = 0.0) -> Tuple[float, FloatArray]:
        """The full-batch objective at the current parameters and its gradient, in one pass over X.

        The objective is ``(sum_i s_i L_i + alpha/2 sum_l ||W_l||^2) / sum_i
        s_i`` (``s_i = 1`` without ``sample_weight``): ``fit``'s batch cost
        with all of X as the batch (docs/math.md, "The L2 penalty"). It is
        what an optimizer over the flat parameter vector, such as L-BFGS,
        evaluates: write the point into :attr:`params`, then call this.

        Parameters
        ----------
        X : ndarray of shape (n_records, n_inputs)
            C-contiguous, of the network's dtype; read in place, never copied.
        y : ndarray of shape (n_records, n_outputs), or (n_records,) for one output
            The targets, as for :meth:`cost`.
        sample_weight : array-like of shape (n_records,), optional
            Finite, >= 0, not all 0.
        alpha : float, default=0.0
            The L2 penalty on the weights (not the biases), finite and >= 0.

        Returns
        -------
        cost : float
            The objective above.
        gradient : ndarray of shape (n_params,)
            Its gradient, a new array of the network's dtype in the layout of
            :attr:`params` (``[W_1, b_1, ..., W_L, b_L]``, each ``W_l`` row-major).

        Raises
        ------
        TypeError
            ``alpha`` not a real number.
        ValueError
            ``alpha`` negative or not finite, or X, y or sample_weight of the
            wrong shape, dtype or values.
        DivergenceError
            The cost or a gradient overflows although inputs and parameters are finite.

        Examples
        --------
        >>> import numpy as np
        >>> from chainrule import Network
        >>> net = Network([3, 1], seed=0)
        >>> X = np.ones((4, 3)); y = np.ones((4, 1))
        >>> cost, gradient = net.cost_and_gradient(X, y, alpha=1e-4)
        >>> gradient.shape == (net.n_params,)
        True
        """
        X, y = _records(X), _in_place(y)
        alpha = _real("alpha", alpha)
        return self._core.cost_and_gradient(X, y, self._weights_for(X, sample_weight), alpha)

    @property
    def params(self) -> FloatArray:
        """Writable view of the flat parameter buffer ``[W_1, b_1, ..., W_L, b_L]`` (n_params values).

        :attr:`weights` and :attr:`biases` are views of the same memory.

        Examples
        --------
        >>> net = cr.Network([2, 1], seed=0)
        >>> net.params.shape, np.shares_memory(net.params, net.weights[0])
        ((3,), True)
        """
        return self._core.params()

    def _dropout_rates(self, dropout) -> list:
        """dropout as one rate per hidden layer (the core checks the values)."""
        hidden = len(self.layer_sizes) - 2
        if dropout is None:
            return []
        if isinstance(dropout, numbers.Real) and not isinstance(dropout, bool):
            return [float(dropout)] * hidden
        if isinstance(dropout, (str, bytes)) or not hasattr(dropout, "__len__"):
            raise TypeError(f"dropout must be a rate, a sequence of rates (one per hidden layer) or None, "
                            f"got {type(dropout).__name__}")
        return [_real(f"dropout[{i}]", rate) for i, rate in enumerate(dropout)]

    def _weights_for(self, X, sample_weight):
        """sample_weight as the core reads it: a new 1-D array of the network's dtype (it is small)."""
        if sample_weight is None:
            return None
        if isinstance(sample_weight, np.ma.MaskedArray):
            raise TypeError("sample_weight must not be a numpy.ma.MaskedArray: its mask would be ignored")
        try:
            weights = np.asarray(sample_weight)
        except (TypeError, ValueError) as error:
            raise TypeError(f"sample_weight must be an array of numbers, got {type(sample_weight).__name__}") \
                from error
        if weights.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must hold real numbers, got dtype {weights.dtype}")
        num_records = getattr(X, "shape", (None,))[0]
        if weights.ndim != 1 or weights.shape[0] != num_records:
            raise ValueError(f"sample_weight must have shape ({num_records},), one weight per record of X, "
                             f"got {weights.shape}")
        return np.ascontiguousarray(weights, dtype=self.dtype)

    def sgd_step(self, X: ArrayIn, y: ArrayIn, lr: float) -> float:
        """One SGD step on the batch ``(X, y)``: ``W <- W - lr dW`` for every parameter.

        Parameters
        ----------
        X, y
            The batch, as for :meth:`cost`.
        lr : float
            The learning rate.

        Returns
        -------
        float
            The cost of the batch before the step.

        Raises
        ------
        TypeError, ValueError
            As for :meth:`cost`, or ``lr`` is not a real number.
        DivergenceError
            The step would make a parameter non-finite; the parameters keep
            their values.
        BusyError
            Another thread is training or differentiating this network.

        Examples
        --------
        >>> net = cr.Network([2, 1], output="identity", loss="mse", seed=0)
        >>> net.weights[0][:] = [[1.0, 2.0]]
        >>> X, y = np.array([[1.0, 1.0]]), np.array([0.0])
        >>> net.sgd_step(X, y, lr=0.05)  # the cost at W = [1, 2]; dW = [6, 6]
        9.0
        >>> net.weights[0].round(6).tolist()
        [[0.7, 1.7]]
        """
        if _is_sparse(X):
            raise TypeError(f"sgd_step takes dense X (a numpy.ndarray), got a sparse {type(X).__name__}; "
                            f"pass X.toarray(), or train on sparse X with fit")
        return self._core.sgd_step(_in_place(X), _in_place(y), _real("lr", lr))

    def fit(self, X: ArrayIn, y: ArrayIn, epochs: int = 10, lr: Optional[float] = None, batch_size: int = 32,
            shuffle: bool = True, seed: Optional[int] = None, tol: Optional[float] = None,
            n_iter_no_change: int = 10, callback: Optional[Callable[[int, float], object]] = None,
            progress: Union[bool, str] = False, optimizer: Optional[optim.Optimizer] = None,
            schedule: Union[None, str, optim.Schedule, Callable[[int, float], float]] = None,
            alpha: float = 0.0, sample_weight: Optional[npt.ArrayLike] = None,
            dropout: Union[None, float, Sequence[float]] = None,
            callback_writes_data: bool = True) -> npt.NDArray[np.float64]:
        """Train by mini-batch gradient descent; return the cost of each epoch run.

        The whole loop runs in C++ with the GIL released. Each epoch's cost is
        the mean of the record losses, each taken before its batch's update.
        ``batch_size`` larger than the data is clipped to it. With ``shuffle``,
        each epoch visits the records in a new permutation drawn from ``seed``;
        without it, in order. With ``tol``, training stops once the cost has
        not improved by ``tol`` for ``n_iter_no_change`` epochs in a row.
        ``callback(epoch, cost)`` is called after each epoch; returning False
        stops training. X and y are read in place: should the callback change
        them so that they no longer pass the checks made on entry, fit raises
        ValueError before the next epoch (the parameters are those after the
        epoch just run). That check is a pass over X after each callback;
        ``callback_writes_data=False`` promises the callback writes none of X,
        y and ``sample_weight``, and skips it (dense X; sparse X is checked
        again all the same). ``progress`` reports each epoch's cost as it ends:
        ``True`` draws a tqdm bar when tqdm is installed and prints one line
        per epoch otherwise, ``"bar"`` insists on tqdm, ``"lines"`` always
        prints lines; the costs reported are those returned. If training diverges (a non-finite cost or parameter),
        :class:`DivergenceError` is raised and the parameters hold their values
        from before the offending step.

        ``optimizer`` is a :mod:`chainrule.optim` optimizer (``SGD`` with
        momentum, ``Adam``, ``AdamW``) that carries its learning rate and its
        state: passing the same one to several ``fit`` calls continues one
        run (``fit(epochs=a)`` then ``fit(epochs=b)`` equals ``fit(epochs=a +
        b)``; the shuffling continues from the first call's ``seed``).
        Without it, training is plain SGD at ``lr`` (default 0.1), each call a
        run of its own. ``schedule`` sets the learning rate of each epoch: a
        :mod:`chainrule.optim` schedule, one of 'constant', 'invscaling',
        'adaptive', or a callable ``(epoch, lr) -> rate``. ``alpha`` is an L2
        penalty on the weights (not the biases): each batch adds ``alpha / 2
        sum ||W_l||^2`` to its summed loss and ``alpha W_l / B`` to the
        gradient, as scikit-learn's ``alpha`` (docs/math.md).
        ``sample_weight`` (one weight per record, finite, >= 0, not all 0)
        weights the records: a batch's cost is ``sum_i s_i L_i / sum_i s_i``
        (and its L2 term is divided by that sum), scikit-learn's semantics;
        integer weights equal repeating the records. The epoch cost is
        ``sum_i s_i L_i / sum_i s_i`` over the epoch. ``dropout`` (a rate in
        [0, 1) for every hidden layer, or one per hidden layer) drops each
        hidden unit of each record in training with that probability and
        scales the kept ones by ``1 / (1 - rate)`` (inverted dropout); its
        masks come from the run's seed, so a run repeats bit for bit at any
        thread count. ``predict`` and ``cost`` never drop.

        Parameters
        ----------
        X, y
            The training data, as for :meth:`cost`, read in place.
        epochs : int, default=10
            Passes over the data (0 trains nothing).
        lr : float, optional
            The learning rate of plain SGD (default 0.1); with ``optimizer``,
            pass it there instead.
        batch_size : int, default=32
            Records per step, clipped to the data.
        shuffle : bool, default=True
            Visit the records in a new order each epoch.
        seed : int, optional
            Seeds the shuffling and the dropout masks (None: from the
            operating system).
        tol : float, optional
            Stop once the cost has not improved by ``tol`` for
            ``n_iter_no_change`` epochs in a row.
        n_iter_no_change : int, default=10
            See ``tol``.
        callback : callable, optional
            ``callback(epoch, cost)`` after each epoch; returning False stops.
        progress : {False, True, 'bar', 'lines'}, default=False
            Report each epoch's cost (a tqdm bar, or lines).
        optimizer : chainrule.optim.Optimizer, optional
            ``SGD``, ``Adam`` or ``AdamW``, carrying the run across calls.
        schedule : str, chainrule.optim.Schedule or callable, optional
            The learning rate of each epoch.
        alpha : float, default=0.0
            The L2 penalty on the weights.
        sample_weight : array-like of shape (n_records,), optional
            One weight per record.
        dropout : float or sequence of float, optional
            The dropout rate of every hidden layer, or of each.
        callback_writes_data : bool, default=True
            Whether ``callback`` may write to X, y or ``sample_weight``: if
            so, fit checks them again after each epoch's callback. False
            skips that check.

        Returns
        -------
        ndarray of float64, shape (n_epochs_run,)
            The cost of each epoch run (fewer than ``epochs`` when stopped early).

        Raises
        ------
        TypeError
            An argument of the wrong type (an array of another dtype, a
            callback that is not callable, an optimizer that is not one).
        ValueError
            A bad value (shapes, targets, settings, ``lr`` given with an
            optimizer, an optimizer bound to another network).
        DivergenceError
            Training reached a non-finite cost or parameter; the parameters
            are those from before the offending step.
        BusyError
            Another thread is training or differentiating this network.
        ImportError
            ``progress='bar'`` without tqdm.

        Examples
        --------
        >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        >>> y = np.array([0, 1, 1, 0], dtype=np.float64)  # XOR
        >>> net = cr.Network([2, 4, 1], seed=1)
        >>> history = net.fit(X, y, epochs=5000, lr=2.0, batch_size=4, seed=0)
        >>> len(history), bool(history[-1] < 0.01 < history[0])
        (5000, True)
        >>> (net.predict(X).ravel() > 0.5).tolist()
        [False, True, True, False]

        With an optimizer, two calls continue one run:

        >>> net = cr.Network([2, 4, 1], seed=1)
        >>> adam = cr.optim.Adam(lr=0.05)
        >>> first = net.fit(X, y, epochs=3, optimizer=adam, seed=0)
        >>> second = net.fit(X, y, epochs=2, optimizer=adam)
        >>> adam.epochs, adam.steps
        (5, 5)
        """
        return self._fit(X, y, epochs, lr, batch_size, shuffle, seed, tol, n_iter_no_change, callback, progress,
                         optimizer, schedule, alpha, sample_weight, dropout, callback_writes_data=callback_writes_data)

    def _fit(self, X, y, epochs, lr, batch_size, shuffle, seed, tol, n_iter_no_change, callback, progress,
             optimizer, schedule, alpha, sample_weight, dropout, reducer=None, agree=None,
             callback_writes_data=True) -> np.ndarray:
        """fit's work. With ``reducer``, this process's part of chainrule.distributed.fit:
        ``agree(error_or_None)`` then tells every process whether the Python checks
        passed on all of them (it raises if not) before the core is called."""
        try:
            call = self._fit_arguments(X, y, epochs, lr, batch_size, shuffle, seed, tol, n_iter_no_change,
                                       callback, optimizer, schedule, alpha, sample_weight, dropout)
            if progress not in (False, True, "bar", "lines"):
                raise ValueError(f"progress must be False, True, 'bar' or 'lines', got {progress!r}")
        except Exception as error:
            if agree is None:
                raise
            agree(error)
            raise
        if agree is not None:
            agree(None)
        X, y, epochs, arguments, training = call
        # the progress report alone writes no data
        writes = bool(callback_writes_data) and callback is not None
        if not progress:
            return self._core.fit(X, y, epochs, *arguments, callback, *training, reducer, writes)
        reporter = EpochProgress(epochs, bar={True: None, "bar": True, "lines": False}[progress])

        def report_then_call(epoch, cost):
            reporter.update(epoch, cost)
            return True if callback is None else callback(epoch, cost)

        try:
            return self._core.fit(X, y, epochs, *arguments, report_then_call, *training, reducer, writes)
        finally:
            reporter.close()

    def _fit_arguments(self, X, y, epochs, lr, batch_size, shuffle, seed, tol, n_iter_no_change, callback,
                       optimizer, schedule, alpha, sample_weight, dropout):
        """fit's checks of Python types, and the core's arguments they make."""
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        X, y = _records(X), _in_place(y)
        if tol is not None:
            tol = _real("tol", tol)
        batch_size = min(_integer("batch_size", batch_size, 0, least=1), _INT64_MAX)  # clipped to the records anyway
        epochs = _count("epochs", epochs)
        if optimizer is None:
            settings, state, rate = optim._plain_sgd_settings(), None, 0.1 if lr is None else _real("lr", lr)
        elif not isinstance(optimizer, optim.Optimizer):
            raise TypeError(f"optimizer must be a chainrule.optim optimizer (SGD, Adam, AdamW) or None, "
                            f"got {type(optimizer).__name__}")
        elif lr is not None:
            raise ValueError("lr: the optimizer carries the learning rate; pass it there (e.g. Adam(lr=...))")
        else:
            settings, state, rate = optimizer._settings, optimizer._state_for(self), optimizer.lr
        arguments = (rate, batch_size, bool(shuffle), _seed("seed", seed), tol,
                     _count("n_iter_no_change", n_iter_no_change, least=1))
        training = (settings, optim._schedule_settings(schedule), _real("alpha", alpha), state,
                    self._weights_for(X, sample_weight), self._dropout_rates(dropout))
        return X, y, epochs, arguments, training

    # -- persistence -------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Write the network to ``path``, in the model file format of docs/model-file.md.

        Atomically: a temporary file beside ``path``, flushed to disk, then
        renamed over it, so an interrupted save leaves any old file whole. A
        symbolic link at ``path`` is replaced, not followed.

        Parameters
        ----------
        path : str, bytes or os.PathLike
            The file name (any bytes but NUL).

        Raises
        ------
        TypeError
            ``path`` is not a str, bytes or os.PathLike.
        ValueError
            ``path`` holds a NUL byte, or a parameter is non-finite.
        OSError
            The file cannot be written or renamed (``PermissionError``,
            ``IsADirectoryError``, ...); a FIFO or a device is not replaced.

        Examples
        --------
        >>> import os, tempfile
        >>> net = cr.Network([2, 3, 1], seed=0)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     net.save(os.path.join(folder, "net.crnn"))
        ...     same = cr.Network.load(os.path.join(folder, "net.crnn"))
        >>> all(np.array_equal(a, b) for a, b in zip(net.weights + net.biases, same.weights + same.biases))
        True
        """
        self._core.save(_path(path))

    @classmethod
    def load(cls, path: PathLike) -> "Network":
        """Read a network written by :meth:`save` (or by the C++ ``chainrule::save``).

        Parameters
        ----------
        path : str, bytes or os.PathLike
            A regular file of either dtype.

        Returns
        -------
        Network
            The network, with its dtype, activations, loss and parameters
            exactly as saved.

        Raises
        ------
        ModelFormatError
            The file is not a valid model file (magic, version, size,
            header, checksum: docs/model-file.md, "Loading: what is checked").
        TypeError, ValueError
            As for :meth:`save`; a FIFO or a device is refused.
        OSError
            The file cannot be opened or read (``FileNotFoundError``, ...).

        Examples
        --------
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     cr.Network([4, 2], output="identity", loss="mse", dtype="float32", seed=0).save(
        ...         os.path.join(folder, "net.crnn"))
        ...     net = cr.Network.load(os.path.join(folder, "net.crnn"))
        >>> net
        Network([4, 2], activation='sigmoid', output='identity', loss='mse', dtype='float32')
        """
        return cls._from_core(_core.load(_path(path)))  # one open: the header and body of one file

    def copy(self) -> "Network":
        """An independent copy with the same parameters (also ``copy.copy``, ``copy.deepcopy``, ``pickle``).

        Returns
        -------
        Network
            A new network: training one leaves the other as it is.

        Examples
        --------
        >>> net = cr.Network([2, 2, 1], seed=0)
        >>> twin = net.copy()
        >>> twin.weights[0][:] = 0
        >>> bool(np.any(net.weights[0] != 0))
        True
        """
        return self._from_core(self._core.copy())

    def __copy__(self) -> "Network":
        return self.copy()

    def __deepcopy__(self, memo: object) -> "Network":
        return self.copy()

    def __getstate__(self) -> dict[str, Any]:
        # Through the core's copy, which reads the parameters under the reader
        # lock: a fit in another thread is never caught halfway through a step.
        snapshot = self._core.copy()
        return {"layer_sizes": list(self.layer_sizes), "activations": list(self.activations), "loss": self.loss,
                "dtype": self.dtype.name, "params": snapshot.params().copy()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        core = _CORE_CLASSES[state["dtype"]](state["layer_sizes"], state["activations"], state["loss"], 0)
        params = state["params"]
        target = core.params()
        if not isinstance(params, np.ndarray) or params.dtype != target.dtype or params.shape != target.shape:
            raise ValueError(f"pickled state: params must be a {target.dtype} array of shape {target.shape}")
        target[:] = params  # same dtype and shape: an exact copy, never a conversion
        self._attach(core)
