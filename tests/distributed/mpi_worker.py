"""One process of a distributed run, started by test_distributed.py through ``mpiexec -n K``.

    python mpi_worker.py SCENARIO OUT_DIR [key=value ...]

Every process builds the same seeded data set, takes its shard (shards_for)
and trains with chainrule.distributed.fit; what it learned (or the error it
raised) goes to OUT_DIR, one file per rank, for the test to check.
"""

import os
import signal
import sys
import threading

import numpy as np
from mpi4py import MPI

import chainrule
from chainrule import distributed, optim

LAYERS = [5, 8, 6, 2]
HIDDEN = ["tanh", "sigmoid"]


def make_data(num_records, dtype):
    """The whole data set, the same on every process (and in the test's single-process run)."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((num_records, LAYERS[0]))
    Y = (rng.random((num_records, LAYERS[-1])) < 0.5).astype(np.float64)
    weights = rng.uniform(0.5, 2.0, num_records)
    return (np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(Y, dtype=dtype),
            np.ascontiguousarray(weights, dtype=dtype))


def shards_for(num_records, size, uneven):
    """Each rank's records: distributed.shard's near-equal split, or one far from equal."""
    if not uneven:
        return [distributed.shard(num_records, r, size) for r in range(size)]
    cuts = {2: [0.6], 3: [0.45, 0.65]}[size]  # e.g. 101 records on 3 ranks: 45, 20, 36
    bounds = [0] + [int(round(c * num_records)) for c in cuts] + [num_records]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def sum_input(rank, n, dtype):
    """Rank `rank`'s buffer in the test of RankOrderSum: values of many magnitudes, so that order shows."""
    rng = np.random.default_rng(100 + rank)
    return (rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)).astype(dtype)


def make_network(seed, dtype):
    return chainrule.Network(LAYERS, activation=HIDDEN, output="sigmoid", loss="bce", seed=seed, dtype=dtype)


def make_optimizer(name):
    return optim.Adam(lr=0.01) if name == "adam" else optim.SGD(lr=0.1, momentum=0.5)


def main():
    scenario, out = sys.argv[1], sys.argv[2]
    options = dict(arg.split("=", 1) for arg in sys.argv[3:])
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    chainrule.set_num_threads(int(options.get("threads", 1)))
    dtype = options.get("dtype", "float64")
    num_records = int(options.get("records", 101))
    X, Y, weights = make_data(num_records, dtype)
    # The shards as views of memory-mapped .npy files (read-only): the core reads
    # them in place (it never copies an array; it refuses one it cannot view).
    if options.get("mmap") == "1":
        if rank == 0:
            np.save(os.path.join(out, "X.npy"), X)
            np.save(os.path.join(out, "Y.npy"), Y)
        comm.Barrier()
        X = np.load(os.path.join(out, "X.npy"), mmap_mode="r")
        Y = np.load(os.path.join(out, "Y.npy"), mmap_mode="r")
    if options.get("holes") == "1":  # about half the inputs 0: sparse records
        X = np.where(np.abs(X) < 0.7, X.dtype.type(0), X)
    part = shards_for(num_records, size, options.get("uneven") == "1")[rank]
    X, Y, weights = X[part], Y[part], weights[part]
    if options.get("sparse") == "1":  # each shard in CSR form, its zeros not stored
        import scipy.sparse
        X = scipy.sparse.csr_matrix(X)
    # Every rank starts from its own seed: fit copies rank 0's parameters.
    net = make_network(3 + rank, dtype)
    fit = dict(epochs=int(options.get("epochs", 3)), batch_size=int(options.get("batch", 4)),
               shuffle=options.get("shuffle") == "1", seed=None if options.get("seed") == "none" else 5,
               optimizer=make_optimizer(options.get("optimizer", "sgd")),
               sample_weight=weights if options.get("weights") == "1" else None,
               progress=options.get("progress", "0") == "lines" and "lines")

    if scenario == "sums":  # RankOrderSum on buffers small and large (the allgather and the split paths)
        reducer = distributed.RankOrderSum(comm)
        for n in (7, 50001):
            for kind in ("float32", "float64"):
                values = sum_input(rank, n, kind)
                reducer(values)
                np.save(os.path.join(out, f"sum_{n}_{kind}_{rank}.npy"), values)
        return
    if scenario == "train":
        history = distributed.fit(net, X, Y, **fit)
        np.save(os.path.join(out, f"params_{rank}.npy"), net._core.params())
        np.save(os.path.join(out, f"history_{rank}.npy"), history)
        distributed.save(net, os.path.join(out, "model.crn"))
    elif scenario == "bad_shard":
        if rank == 1:
            if options["bad"] == "nan":
                X = X.copy()
                X[2, 3] = np.nan
            else:  # a shard one column too wide
                X = np.ascontiguousarray(np.hstack([X, X[:, :1]]))
        try:
            distributed.fit(net, X, Y, **fit)
            message = "no error"
        except Exception as error:  # noqa: BLE001 - the test reads the message
            message = f"{type(error).__name__}: {error}"
        with open(os.path.join(out, f"error_{rank}.txt"), "w") as f:
            f.write(message)
    elif scenario in ("callback", "interrupt", "disagree", "diverge"):
        if scenario == "callback":
            def callback(epoch, cost):  # runs on rank 0 only
                if epoch == 1 and options["callback"] == "raise":
                    raise ValueError("the callback's own error")
                return not (epoch == 1 and options["callback"] == "stop")
            fit["callback"] = callback
        elif scenario == "interrupt":
            fit["epochs"] = 10**9
            if rank == 1:  # Ctrl-C reaching one process only
                threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        elif scenario == "diverge":  # steps so large that the cost overflows within the first epoch
            fit["optimizer"] = optim.SGD(lr=1e308)
        elif rank == 1:
            fit["epochs"] += 1
        try:
            history = distributed.fit(net, X, Y, **fit)
            message = f"history {len(history)}"
        except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt included: the test reads it
            message = f"{type(error).__name__}: {error}"
        np.save(os.path.join(out, f"params_{rank}.npy"), net._core.params())
        with open(os.path.join(out, f"error_{rank}.txt"), "w") as f:
            f.write(message)
    elif scenario == "kill":
        if rank == 1:  # dies without a word, mid-training
            threading.Timer(float(options.get("after", 1.0)), os.kill, (os.getpid(), signal.SIGKILL)).start()
        fit["epochs"] = 10**9
        distributed.fit(net, X, Y, **fit)
        distributed.save(net, os.path.join(out, "model.crn"))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main()
