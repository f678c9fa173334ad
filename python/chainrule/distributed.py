"""Synchronous data-parallel training over MPI (docs/math.md, "Distributed training").

Each process holds its own shard of the records; every step takes the next
``batch_size`` records of every shard, the processes sum their gradients and
losses, and each applies the same update, so that k processes with a batch of
b records each take exactly the steps one process would take on the k*b
records of each step (up to the rounding of the sums: see :func:`fit`).

Run a script under MPI, e.g. ``mpiexec -n 4 python train.py``::

    from mpi4py import MPI
    import numpy as np
    import chainrule
    from chainrule import distributed

    comm = MPI.COMM_WORLD
    X = np.load("X.npy", mmap_mode="r")              # read in place, never copied
    y = np.load("y.npy", mmap_mode="r")
    part = distributed.shard(len(X), comm.rank, comm.size)
    net = chainrule.Network([X.shape[1], 64, 1], activation="relu", output="sigmoid", loss="bce", seed=0)
    history = distributed.fit(net, X[part], y[part], epochs=10, batch_size=64, progress=True)
    distributed.save(net, "model.crnn")                # rank 0 writes it

mpi4py (and an MPI, e.g. the ``mpich`` wheel) come with ``pip install 'chainrule[mpi]'``.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import numpy as np

from . import _core
from .network import Network, _integer

__all__ = ["fit", "shard", "shard_order", "save", "RankOrderSum"]

# Buffers of at least this many values per process are summed by a
# reduce-scatter and an allgather (each process moves about 2 (k-1)/k of the
# buffer); smaller ones by one allgather of every process's buffer (k - 1
# buffers in, one out: with two processes, no more than the split's, in one
# collective rather than two).
_SPLIT_VALUES = 4096


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError("chainrule.distributed needs mpi4py and an MPI: pip install 'chainrule[mpi]'") from error
    return MPI


def shard(n_records, rank, size) -> slice:
    """The records ``[start, stop)`` that process ``rank`` of ``size`` holds of ``n_records``.

    Contiguous shards, the first ``n_records % size`` ranks holding one record
    more than the others: ``X[shard(len(X), comm.rank, comm.size)]`` is a view.

    Parameters
    ----------
    n_records : int
        The records of the whole data set (>= 0).
    rank : int
        This process's rank, in ``[0, size)``.
    size : int
        The number of processes (>= 1).

    Returns
    -------
    slice
        This process's records.

    Raises
    ------
    TypeError
        An argument that is not an integer.
    ValueError
        A negative count, ``size < 1`` or ``rank`` outside ``[0, size)``.

    Examples
    --------
    >>> from chainrule import distributed
    >>> [distributed.shard(10, rank, 3) for rank in range(3)]
    [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    """
    n_records = _integer("n_records", n_records, 0)
    size = _integer("size", size, 1)
    rank = _integer("rank", rank, 0)
    if rank >= size:
        raise ValueError(f"rank must be in [0, size={size}), got {rank}")
    base, extra = divmod(n_records, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def shard_order(n_records, seed, rank, epoch) -> np.ndarray:
    """The order in which ``rank`` visits its ``n_records`` records in epoch ``epoch`` of a shuffled :func:`fit`.

    Epochs count from the start of the run (an optimizer that continues a run
    continues its count); ``seed`` is the run's. Each process draws its own
    permutation from (seed, rank, epoch), so no process needs another's shard.

    Parameters
    ----------
    n_records : int
        The records of this process's shard.
    seed : int
        The run's seed (``fit``'s ``seed``).
    rank : int
        The process's rank.
    epoch : int
        The epoch, counted from the start of the run.

    Returns
    -------
    ndarray of intp, shape (n_records,)
        A permutation of ``range(n_records)``.

    Raises
    ------
    TypeError, ValueError
        An argument that is not a non-negative integer.

    Examples
    --------
    >>> from chainrule import distributed
    >>> order = distributed.shard_order(5, seed=1, rank=0, epoch=0)
    >>> sorted(order.tolist())
    [0, 1, 2, 3, 4]
    >>> bool((order == distributed.shard_order(5, seed=1, rank=0, epoch=0)).all())
    True
    """
    return np.asarray(_core.distributed_order(_integer("n_records", n_records, 0), _integer("seed", seed, 0),
                                              _integer("rank", rank, 0), _integer("epoch", epoch, 0)),
                      dtype=np.intp)


class RankOrderSum:
    """The reducer :func:`fit` hands the core: sums a buffer over ``comm``'s processes, in place.

    Every element's sum is taken in rank order, ``((v_0 + v_1) + v_2) + ...``,
    whatever order the messages arrive in (MPI_Allreduce with MPI_SUM does
    not promise one), so that a run repeats bit for bit. Large buffers go
    through a reduce-scatter (each process sums one slice of the buffer, in
    rank order) and an allgather of the sums; small ones, and any with two
    processes, through one allgather. Both give the same bits.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The processes to sum over.

    Examples
    --------
    Under ``mpiexec -n 2``, every process ends with the rank-order sum:

    >>> from mpi4py import MPI  # doctest: +SKIP
    >>> values = np.full(3, MPI.COMM_WORLD.rank + 1.0)  # doctest: +SKIP
    >>> distributed.RankOrderSum(MPI.COMM_WORLD)(values); values  # doctest: +SKIP
    array([3., 3., 3.])
    """

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._scratch = {}

    def _buffer(self, key, shape, dtype):
        buffer = self._scratch.get(key)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._scratch[key] = np.empty(shape, dtype)
        return buffer

    def __call__(self, values: np.ndarray) -> None:
        """Replace ``values`` (a contiguous array, the same shape on every process) by its sum over the processes.

        Parameters
        ----------
        values : ndarray
            This process's values; overwritten with the sum.

        Examples
        --------
        >>> summed = distributed.RankOrderSum(MPI.COMM_WORLD)  # doctest: +SKIP
        >>> summed(values)  # doctest: +SKIP
        """
        size = self.size
        if size == 1:
            return
        n = values.size
        if size == 2 or n < size * _SPLIT_VALUES:  # two processes: the allgather moves no more bytes
            every = self._buffer("gather", (size, n), values.dtype)
            self.comm.Allgather(values, every)
            values[:] = every[0]
            for r in range(1, size):
                values += every[r]
            return
        MPI = _mpi()
        kind = MPI._typedict[values.dtype.char]
        base, extra = divmod(n, size)
        counts = [base + (r < extra) for r in range(size)]
        starts = [r * base + min(r, extra) for r in range(size)]
        mine = counts[self.rank]
        parts = self._buffer("parts", (size, mine), values.dtype)
        self.comm.Alltoallv([values, (counts, starts), kind],
                            [parts, ([mine] * size, [r * mine for r in range(size)]), kind])
        total = self._buffer("total", (mine,), values.dtype)
        total[:] = parts[0]
        for r in range(1, size):
            total += parts[r]
        self.comm.Allgatherv([total, kind], [values, (counts, starts), kind])


def _agreement(comm):
    """fit's check that the Python-side checks passed on every process (else all raise, naming the ranks)."""

    def agree(error):
        messages = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
        failed = [r for r, message in enumerate(messages) if message is not None]
        if not failed:
            return
        ranks = ", ".join(map(str, failed))
        raise ValueError(f"{'rank' if len(failed) == 1 else 'ranks'} {ranks} of {comm.Get_size()} failed; "
                         f"rank {failed[0]}: {messages[failed[0]]} (at the start of fit; no process trained)") \
            from error

    return agree


def fit(network: Network, X, y, comm=None, *, epochs=10, lr=None, batch_size=32, shuffle=True, seed=None,
        tol=None, n_iter_no_change=10, callback=None, progress=False, optimizer=None, schedule=None, alpha=0.0,
        sample_weight=None, dropout=None) -> np.ndarray:
    """Train ``network`` on the union of every process's shard; return the cost of each epoch (the same on every rank).

    Every process of ``comm`` (default ``MPI.COMM_WORLD``) calls it with its
    own shard ``X``, ``y`` (and ``sample_weight``), read in place (a
    memory-mapped ``.npy`` is never copied), and the same options, which are
    those of :meth:`chainrule.Network.fit` (``seed=None`` draws one on rank 0). The parameters, and the optimizer's state
    when it continues a run, are first copied from rank 0.

    Steps: step j takes records ``[j * batch_size, (j + 1) * batch_size)`` of
    every shard's epoch order, the shards in rank order; a shard that has run
    out gives none, so with uneven shards the last steps of an epoch are
    smaller, and an epoch has ``ceil(largest shard / batch_size)`` steps. The
    step's gradient is the sum of every process's part divided by the step's
    record count (or its weights' sum), exactly the step one process takes
    on those records in that order; the sums are taken in rank order
    (:class:`RankOrderSum`), so a run repeats bit for bit, and it agrees with
    one process up to the rounding of summing per-process partial sums.

    Shuffling: each process permutes its own shard each epoch from (seed,
    rank, epoch) (:func:`shard_order`); the records never move between
    processes. The epoch's cost, ``tol``'s stopping rule and the schedule
    see every record, so all processes stop together. ``callback`` and
    ``progress`` run on rank 0 only; a callback that returns False (or
    raises) stops every process after that epoch.

    Errors: a process whose shard or options fail the checks makes every
    process raise ValueError naming its rank and the error, before any
    training. Divergence raises DivergenceError on every process at the
    same step. Ctrl-C (SIGINT, which ``mpiexec`` forwards to every process)
    stops every process at the same step, those it reached with
    KeyboardInterrupt, the others with RuntimeError naming them. Should a
    process die, the MPI launcher ends the others.

    Parameters
    ----------
    network : chainrule.Network
        The network, built the same way on every process.
    X, y
        This process's shard, as for :meth:`chainrule.Network.fit` (dense).
    comm : mpi4py.MPI.Comm, optional
        The processes (default ``MPI.COMM_WORLD``).
    epochs, lr, batch_size, shuffle, seed, tol, n_iter_no_change, callback, progress, optimizer, schedule, alpha, sample_weight, dropout
        As for :meth:`chainrule.Network.fit`; ``batch_size`` records per process per step.

    Returns
    -------
    ndarray of float64
        The cost of each epoch over all the shards, the same on every process.

    Raises
    ------
    TypeError
        ``network`` is not a Network, or an argument of the wrong type.
    ValueError
        A process's shard or options failed the checks (naming its rank).
    DivergenceError
        Training diverged (on every process, at the same step).
    ImportError
        mpi4py is not installed.

    Examples
    --------
    ``train.py``, run as ``mpiexec -n 4 python train.py``:

    >>> from mpi4py import MPI  # doctest: +SKIP
    >>> comm = MPI.COMM_WORLD  # doctest: +SKIP
    >>> part = distributed.shard(len(X), comm.rank, comm.size)  # doctest: +SKIP
    >>> history = distributed.fit(net, X[part], y[part], epochs=20, seed=1)  # doctest: +SKIP
    >>> distributed.save(net, "model.crnn")  # doctest: +SKIP
    """
    if not isinstance(network, Network):
        raise TypeError(f"network must be a chainrule.Network, got {type(network).__name__}")
    if comm is None:
        comm = _mpi().COMM_WORLD
    reducer = RankOrderSum(comm)
    on_rank0 = reducer.rank == 0
    with _ctrl_c_noted(reducer):
        if seed is None:  # one fresh seed for all: rank 0's
            seed = comm.bcast(int(np.random.SeedSequence().entropy % 2**63) if on_rank0 else None, root=0)
        return network._fit(X, y, epochs, lr, batch_size, shuffle, seed, tol, n_iter_no_change,
                            callback if on_rank0 else None, progress if on_rank0 else False, optimizer, schedule,
                            alpha, sample_weight, dropout, reducer=reducer, agree=_agreement(comm))


@contextlib.contextmanager
def _ctrl_c_noted(reducer):
    """While fit runs, Ctrl-C (SIGINT) is noted rather than raised: a KeyboardInterrupt raised inside
    the reducer's collective would leave the other processes waiting in it. The core asks
    ``reducer.interrupted()`` between steps, and every process stops at the same step (this one
    with KeyboardInterrupt). Only the main thread receives signals; elsewhere nothing changes."""
    noted = []
    reducer.interrupted = lambda: bool(noted)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def save(network: Network, path, comm=None) -> None:
    """Rank 0 writes ``network`` to ``path`` (atomically); every process returns once it is written.

    After :func:`fit`, every process holds the same parameters, so one copy
    is written. Should rank 0 fail to write it, every process raises.

    Parameters
    ----------
    network : chainrule.Network
        The trained network.
    path : str, bytes or os.PathLike
        Where rank 0 writes the model file.
    comm : mpi4py.MPI.Comm, optional
        The processes (default ``MPI.COMM_WORLD``).

    Raises
    ------
    OSError
        Rank 0 could not write the file (on every process).

    Examples
    --------
    >>> distributed.save(net, "model.crnn")  # doctest: +SKIP
    """
    if comm is None:
        comm = _mpi().COMM_WORLD
    error = None
    if comm.Get_rank() == 0:
        try:
            network.save(path)
        except Exception as caught:  # every process must learn it, or the others would wait forever
            error = caught
    message = comm.bcast(None if error is None else f"{type(error).__name__}: {error}", root=0)
    if error is not None:
        raise error
    if message is not None:
        raise OSError(f"rank 0 could not save the model to {path!r}: {message}")
