"""Out-of-core training on Dask: dask_ml's Incremental drives chainrule's
MLPClassifier.partial_fit over the blocks of a Dask array read from chunks on
disk, ParallelPostFit predicts block by block, on a LocalCluster of two worker
processes bound to the loopback interface.

The data set (~1 GB of float32 in .npy chunks) is several times larger than
what any process is allowed to hold: the test measures the peak resident
memory of both worker processes and of this client process (each sampled
every 10 ms during training and prediction) and checks that each
stays well below the data set's size, while the model reaches an accuracy
that shows it learned from the blocks.

Skipped without dask, distributed or dask-ml (the test extra installs them).
"""

import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("sklearn")
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")

from chainrule.sklearn import MLPClassifier  # noqa: E402

NUM_FEATURES = 50
NUM_CLASSES = 3
ROWS_PER_CHUNK = 100_000  # 20 MB of float32 features per chunk
NUM_CHUNKS = 50           # 1 GB on disk in all: a worker's interpreter with its imports is 300-400 MB
MiB = 2**20


def write_chunks(directory):
    """Chunk i: X_i.npy (ROWS_PER_CHUNK, NUM_FEATURES) float32 and y_i.npy, labels of a noisy linear rule."""
    rule = np.random.default_rng(0).standard_normal((NUM_FEATURES, NUM_CLASSES))
    for i in range(NUM_CHUNKS):  # one chunk in memory at a time
        rng = np.random.default_rng(100 + i)
        X = rng.standard_normal((ROWS_PER_CHUNK, NUM_FEATURES), dtype=np.float32)
        scores = X @ rule + 0.5 * rng.standard_normal((ROWS_PER_CHUNK, NUM_CLASSES))
        np.save(directory / f"X_{i}.npy", X)
        np.save(directory / f"y_{i}.npy", scores.argmax(axis=1).astype(np.int64))


def dask_arrays(directory):
    """Dask arrays over the chunk files, each block memory-mapped by the worker that reads it.

    Memory-mapped, because Incremental chains the partial_fit calls one after
    the other while the scheduler runs every block's load task as soon as a
    thread is free: loads that read the file into memory would pile up
    (measured: ~8 blocks per worker waiting for their turn). A mapped block
    costs pages only while partial_fit reads it, and is dropped after."""
    load = dask.delayed(np.load, pure=True)
    X = da.concatenate([da.from_delayed(load(str(directory / f"X_{i}.npy"), mmap_mode="r"),
                                        (ROWS_PER_CHUNK, NUM_FEATURES),
                                        dtype=np.float32) for i in range(NUM_CHUNKS)])
    y = da.concatenate([da.from_delayed(load(str(directory / f"y_{i}.npy")), (ROWS_PER_CHUNK,), dtype=np.int64)
                        for i in range(NUM_CHUNKS)])
    return X, y


def current_rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """The highest resident size of this process, sampled every 10 ms while active.

    (Sampled rather than read from ru_maxrss: a worker process inherits the
    peak of the process that started it, so its ru_maxrss says nothing.)"""

    def __init__(self):
        self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, current_rss_bytes())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def start_sampling(dask_worker):
    """Run on each worker by client.run: a sampler of that worker process's RSS; returns its RSS now."""
    dask_worker.chainrule_rss = RssSampler().__enter__()
    return current_rss_bytes()


def stop_sampling(dask_worker):
    sampler = dask_worker.chainrule_rss
    sampler.__exit__(None, None, None)
    return sampler.peak


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="measures memory through /proc (Linux)")
def test_incremental_training_on_a_local_cluster_stays_out_of_core(tmp_path):
    write_chunks(tmp_path)
    data_bytes = sum(f.stat().st_size for f in tmp_path.glob("X_*.npy"))
    assert data_bytes > 950 * MiB
    X, y = dask_arrays(tmp_path)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        worker_baseline = client.run(start_sampling)
        client_before = current_rss_bytes()
        model = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.05, batch_size=256, random_state=0,
                              dtype="float32")
        started = time.perf_counter()
        with RssSampler() as client_rss:
            incremental = dask_ml_wrappers.Incremental(model, shuffle_blocks=True, random_state=0)
            incremental.fit(X, y, classes=list(range(NUM_CLASSES)))
            trained = incremental.estimator_
            predictor = dask_ml_wrappers.ParallelPostFit(estimator=trained)
            predictions = predictor.predict(X)  # lazy: one task per block
            assert isinstance(predictions, da.Array) and predictions.numblocks == (NUM_CHUNKS,)
            accuracy = float((predictions == y).mean().compute())
        seconds = time.perf_counter() - started
        worker_peaks = client.run(stop_sampling)

    assert len(trained.loss_curve_) == NUM_CHUNKS and trained.n_iter_ == 1  # one partial_fit (one epoch) per block
    assert list(trained.classes_) == list(range(NUM_CLASSES)) and trained.network_.loss == "cce"
    assert accuracy > 0.9, f"accuracy {accuracy:.3f} after one pass over {NUM_CHUNKS} blocks"
    report = ", ".join(f"worker {address[-5:]} peak {peak / MiB:.0f} MiB (at start {worker_baseline[address] / MiB:.0f})"
                       for address, peak in worker_peaks.items())
    print(f"\n{data_bytes / MiB:.0f} MiB of data, {seconds:.1f} s, accuracy {accuracy:.3f}; {report}; "
          f"client peak {client_rss.peak / MiB:.0f} MiB (before {client_before / MiB:.0f})")
    # Each worker held a few blocks at a time, never the data set: what training
    # added to it stays a small fraction of the data, and its whole peak
    # (interpreter, NumPy, scikit-learn and Dask included, 300-400 MB of
    # imports alone) stays well below the data's size.
    for address, peak in worker_peaks.items():
        assert peak - worker_baseline[address] < 0.2 * data_bytes, f"worker {address} grew by more than 20%"
        assert peak < 0.6 * data_bytes, f"worker {address} peaked at {peak / MiB:.0f} MiB"
    # The client only sends the graph and receives the model and one number.
    assert client_rss.peak - client_before < 0.1 * data_bytes
