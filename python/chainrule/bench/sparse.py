"""Sparse X: chainrule's and scikit-learn's MLPClassifier on the same text-like CSR data, and chainrule dense vs sparse.

    python -m chainrule.bench.sparse                       # 10,000 x 100,000 at 0.5%, float32, 1 thread
    python -m chainrule.bench.sparse --records 20000 --epochs 5 --threads 1 2 --dtype float64

The data are bag-of-words-like rows: each record draws its words from a
Zipf law over the --features columns (a few columns are in most records,
most in few), about --density of the columns per record, with values
1 + log(count), each row scaled to unit length (as TF-IDF rows are); the
binary label is the sign of a random linear teacher, centred. Both
libraries fit the same estimator settings (one hidden relu layer of
--hidden units, Adam, batches of 200, shuffled) for --epochs epochs, on the
CSR matrix itself; the figure is the best per-epoch time of --rounds fits.

Before timing, the results are checked: on a slice, in float64, records in
order, chainrule's estimator must take scikit-learn's steps (the same
initial weights and the same Adam updates: parameters within 1e-8
relative), and chainrule on the CSR slice must match chainrule on the
densified slice. Then the core Network's epoch on dense and on CSR records
is timed on --dense-records records, where the dense matrix fits in memory.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

DATA_SEED = 20240617


def make_text_like(num_records: int, num_features: int, density: float, dtype, seed: int = DATA_SEED):
    """(X CSR (num_records, num_features), y 0/1 labels): Zipf-distributed words, rows of unit length."""
    import scipy.sparse as sparse

    rng = np.random.default_rng([seed, num_records, num_features])
    words = max(1, int(round(density * num_features)))
    ranks = np.arange(1, num_features + 1, dtype=np.float64)
    cumulative = np.cumsum(1.0 / ranks**1.05)
    cumulative /= cumulative[-1]
    column_of_rank = rng.permutation(num_features)  # frequent words anywhere among the columns
    draws = 2 * words  # frequent words repeat: draw more, keep the first `words` distinct ones
    indptr = np.zeros(num_records + 1, dtype=np.int64)
    indices, values = [], []
    for r in range(num_records):
        ranked = np.minimum(np.searchsorted(cumulative, rng.random(draws)), num_features - 1)
        columns, first, counts = np.unique(column_of_rank[ranked], return_index=True, return_counts=True)
        keep = np.sort(np.argsort(first)[:words])  # the first distinct words drawn, in column order
        value = 1.0 + np.log(counts[keep])
        indices.append(columns[keep])
        values.append(value / np.linalg.norm(value))
        indptr[r + 1] = indptr[r] + len(keep)
    X = sparse.csr_matrix((np.concatenate(values).astype(dtype), np.concatenate(indices).astype(np.int32),
                           indptr.astype(np.int32)), shape=(num_records, num_features))
    teacher = rng.standard_normal(num_features)
    score = np.asarray(X @ teacher).ravel()
    y = (score > np.median(score)).astype(np.int64)
    return X, y


def estimator_settings(hidden: int, batch_size: int, epochs: int, shuffle: bool, seed: int) -> dict:
    """One set of MLPClassifier parameters for both libraries: Adam, exactly `epochs` epochs."""
    return dict(hidden_layer_sizes=(hidden,), activation="relu", solver="adam", learning_rate_init=1e-3,
                alpha=1e-4, batch_size=batch_size, max_iter=epochs, shuffle=shuffle, random_state=seed,
                tol=0.0, n_iter_no_change=10**9)


def fit_quietly(estimator, X, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        estimator.fit(X, y)
        return time.perf_counter() - start


def relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def check(options) -> dict:
    """The results agree before anything is timed; returns the worst relative errors."""
    from sklearn.neural_network import MLPClassifier as Theirs

    from chainrule.sklearn import MLPClassifier as Ours

    X, y = make_text_like(600, options.features, options.density, np.float64)
    settings = estimator_settings(options.hidden, 50, 2, False, 0)
    ours, theirs = Ours(**settings), Theirs(**settings)
    fit_quietly(ours, X, y)
    fit_quietly(theirs, X, y)
    steps = max(relative_error(a, b) for a, b in zip(ours.coefs_ + ours.intercepts_,
                                                      theirs.coefs_ + theirs.intercepts_))
    dense = Ours(**settings)
    fit_quietly(dense, X.toarray(), y)
    dense_vs_sparse = max(relative_error(a, b) for a, b in zip(ours.coefs_ + ours.intercepts_,
                                                                dense.coefs_ + dense.intercepts_))
    if not (steps < 1e-8 and dense_vs_sparse < 1e-10):
        raise SystemExit(f"check failed: chainrule vs scikit-learn {steps:.3g}, sparse vs dense {dense_vs_sparse:.3g}")
    return {"chainrule_vs_sklearn": steps, "sparse_vs_dense": dense_vs_sparse}


def time_estimators(options, X, y, threads: int) -> dict:
    """Best seconds per epoch of each library's estimator, and its training accuracy."""
    from sklearn.neural_network import MLPClassifier as Theirs
    from threadpoolctl import threadpool_limits

    import chainrule as cr
    from chainrule.sklearn import MLPClassifier as Ours

    cr.set_num_threads(threads)
    settings = estimator_settings(options.hidden, 200, options.epochs, True, 0)
    best, accuracy = {}, {}
    with threadpool_limits(limits=threads):
        for _ in range(options.rounds):
            for name, Estimator in (("chainrule", Ours), ("sklearn", Theirs)):
                estimator = Estimator(**settings)
                seconds = fit_quietly(estimator, X, y) / estimator.n_iter_
                best[name] = min(best.get(name, np.inf), seconds)
                accuracy[name] = float(estimator.score(X, y))
    return {"seconds_per_epoch": best, "train_accuracy": accuracy}


def time_dense_vs_sparse(options, threads: int) -> dict:
    """Best seconds per epoch of the core Network on the same records, dense and CSR."""
    import chainrule as cr

    cr.set_num_threads(threads)
    X, y = make_text_like(options.dense_records, options.features, options.density, options.dtype)
    Y = y.reshape(-1, 1).astype(options.dtype)
    dense = X.toarray()
    start = cr.Network([options.features, options.hidden, 1], "relu", "sigmoid", "bce", dtype=options.dtype, seed=0)
    best = {}
    for _ in range(options.rounds):
        for name, data in (("dense", dense), ("sparse", X)):
            net = start.copy()
            begin = time.perf_counter()
            net.fit(data, Y, epochs=options.epochs, batch_size=200, seed=0, optimizer=cr.optim.Adam(lr=1e-3))
            best[name] = min(best.get(name, np.inf), (time.perf_counter() - begin) / options.epochs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--density", type=float, default=0.005)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--dense-records", type=int, default=1000,
                        help="records of the dense vs sparse comparison (the dense matrix must fit in memory)")
    options = parser.parse_args()
    options.dtype = np.dtype(options.dtype)

    errors = check(options)
    print(f"check: chainrule's steps vs scikit-learn's {errors['chainrule_vs_sklearn']:.2g} relative, "
          f"sparse vs dense {errors['sparse_vs_dense']:.2g} (float64, 600 records, in order)")
    X, y = make_text_like(options.records, options.features, options.density, options.dtype)
    print(f"data: {X.shape[0]:,} x {X.shape[1]:,} CSR, {X.nnz / X.shape[0]:.0f} stored entries per record "
          f"(density {X.nnz / (X.shape[0] * X.shape[1]):.3%}), {options.dtype.name}; MLPClassifier "
          f"hidden=({options.hidden},) relu, adam, batch 200, shuffled; best of {options.rounds} rounds of "
          f"{options.epochs} epochs")
    print("| threads | chainrule s/epoch | scikit-learn s/epoch | speed-up | chainrule acc | scikit-learn acc |")
    print("|---|---|---|---|---|---|")
    for threads in options.threads:
        result = time_estimators(options, X, y, threads)
        ours, theirs = result["seconds_per_epoch"]["chainrule"], result["seconds_per_epoch"]["sklearn"]
        print(f"| {threads} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.1f}x | "
              f"{result['train_accuracy']['chainrule']:.3f} | {result['train_accuracy']['sklearn']:.3f} |")
    print(f"\nchainrule.Network, {options.dense_records:,} records, dense ndarray vs CSR (same model, Adam, batch 200)")
    print("| threads | dense s/epoch | CSR s/epoch | CSR speed-up |")
    print("|---|---|---|---|")
    for threads in options.threads:
        best = time_dense_vs_sparse(options, threads)
        print(f"| {threads} | {best['dense']:.3f} | {best['sparse']:.3f} | {best['dense'] / best['sparse']:.1f}x |")


if __name__ == "__main__":
    main()
