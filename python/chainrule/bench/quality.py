"""Model quality against scikit-learn's defaults: ``python -m chainrule.bench.quality``.

For each data set and seed, both libraries' estimators are trained with their
DEFAULT parameters (``MLPClassifier()`` / ``MLPRegressor()``, only
``random_state`` set, so that both start from the same initial weights) on
the same 75/25 split, X standardized on the training part (and y too, for the
regressions), with one thread each (chainrule.set_num_threads(1), and
threadpoolctl for the BLAS under NumPy and scikit-learn). The table gives the
test score (accuracy, or R^2) as mean ± standard deviation over the seeds, the
fit time and the epochs (``n_iter_``) of each, and chainrule's speed-up
(scikit-learn's mean fit time over chainrule's).

    python -m chainrule.bench.quality            # 7 data sets x 3 seeds
    python -m chainrule.bench.quality --quick    # 1 seed, the synthetic sets at 2,000 records
    python -m chainrule.bench.quality --datasets digits iris --seeds 5 --json results.json
    python -m chainrule.bench.quality --repeats 3  # each fit timed 3 times, the shortest kept

Needs scikit-learn (``pip install 'chainrule[sklearn]'``); threadpoolctl
comes with it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings

import numpy as np

DATASETS = ("digits", "breast_cancer", "wine", "iris", "classification", "regression", "friedman1")
SYNTHETIC_RECORDS = 20_000  # make_classification, make_regression, make_friedman1
QUICK_RECORDS = 2_000


def load(name: str, records: int):
    """(X, y, task) of a data set: task is 'classification' or 'regression'."""
    from sklearn import datasets

    bundled = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
               "wine": datasets.load_wine, "iris": datasets.load_iris}
    if name in bundled:
        X, y = bundled[name](return_X_y=True)
        return X, y, "classification"
    if name == "classification":  # 5 classes need 2^n_informative >= 5 classes x 2 clusters
        X, y = datasets.make_classification(n_samples=records, n_features=40, n_informative=10, n_classes=5,
                                            random_state=0)
        return X, y, "classification"
    if name == "regression":
        X, y = datasets.make_regression(n_samples=records, n_features=50, random_state=0)
        return X, y, "regression"
    if name == "friedman1":
        X, y = datasets.make_friedman1(n_samples=records, random_state=0)
        return X, y, "regression"
    raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")


def split(X, y, task: str, seed: int):
    """The seed's 75/25 split, X standardized on the training part (y too for a regression)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    if task == "regression":
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    return X_train, X_test, y_train, y_test


def estimator(library: str, task: str, seed: int):
    """The library's estimator with its default parameters (random_state aside)."""
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    else:
        from chainrule.sklearn import MLPClassifier, MLPRegressor
    return (MLPClassifier if task == "classification" else MLPRegressor)(random_state=seed)


def run_one(library: str, X_train, X_test, y_train, y_test, task: str, seed: int, repeats: int = 1) -> dict:
    """The test score, fit time and epochs of one fit; with repeats > 1 the same fit (same seed, same model)
    is timed that many times and the shortest time kept, for a machine whose speed comes and goes."""
    times = []
    for _ in range(repeats):
        model = estimator(library, task, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fit that reaches max_iter warns (ConvergenceWarning)
            start = time.perf_counter()
            model.fit(X_train, y_train)
            times.append(time.perf_counter() - start)
    return {"score": float(model.score(X_test, y_test)), "seconds": min(times), "epochs": int(model.n_iter_)}


def run(datasets, seeds, records, progress=sys.stderr, repeats: int = 1) -> list:
    """One row per data set: each library's results per seed."""
    import chainrule
    from threadpoolctl import threadpool_limits

    chainrule.set_num_threads(1)
    rows = []
    with threadpool_limits(limits=1):
        for name in datasets:
            X, y, task = load(name, records)
            row = {"dataset": name, "task": task, "records": int(X.shape[0]), "features": int(X.shape[1]),
                   "sklearn": [], "chainrule": []}
            for seed in seeds:
                parts = split(X, y, task, seed)
                for library in ("sklearn", "chainrule"):
                    result = run_one(library, *parts, task, seed, repeats)
                    row[library].append(result)
                    print(f"{name} seed {seed} {library}: score {result['score']:.4f}, {result['seconds']:.2f} s, "
                          f"{result['epochs']} epochs", file=progress, flush=True)
            rows.append(row)
    return rows


def summary(results: list) -> dict:
    scores = [r["score"] for r in results]
    seconds = [r["seconds"] for r in results]
    return {"mean": statistics.fmean(scores), "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "seconds": statistics.fmean(seconds), "epochs": statistics.fmean(r["epochs"] for r in results)}


def table(rows: list) -> str:
    """The markdown table of the rows."""
    lines = ["| data (records x features) | score | scikit-learn | chainrule | within 1 std | "
             "scikit-learn fit | chainrule fit | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        sk, cr = summary(row["sklearn"]), summary(row["chainrule"])
        within = "yes" if abs(cr["mean"] - sk["mean"]) <= sk["std"] or cr["mean"] >= sk["mean"] else "no"
        metric = "accuracy" if row["task"] == "classification" else "R^2"
        lines.append(f"| {row['dataset']} ({row['records']} x {row['features']}) | {metric} | "
                     f"{sk['mean']:.4f} ± {sk['std']:.4f} | {cr['mean']:.4f} ± {cr['std']:.4f} | {within} | "
                     f"{sk['seconds']:.2f} s ({sk['epochs']:.0f} ep.) | {cr['seconds']:.2f} s ({cr['epochs']:.0f} ep.) | "
                     f"{sk['seconds'] / cr['seconds']:.1f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chainrule.bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"1 seed, the synthetic sets at {QUICK_RECORDS} records (a smoke run)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; 1 with --quick)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time each fit this many times and keep the shortest (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-': stdout)")
    args = parser.parse_args(argv)
    num_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if num_seeds < 1:
        parser.error(f"--seeds must be >= 1, got {num_seeds}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    records = QUICK_RECORDS if args.quick else SYNTHETIC_RECORDS
    try:
        import sklearn
    except ImportError:
        parser.exit(2, "chainrule.bench.quality needs scikit-learn: pip install 'chainrule[sklearn]'\n")
    import chainrule

    progress = sys.stderr
    rows = run(args.datasets, range(num_seeds), records, progress, args.repeats)
    header = (f"chainrule {chainrule.__version__}, scikit-learn {sklearn.__version__}, {platform.machine()}, "
              f"{num_seeds} seed(s), 1 thread each, default parameters"
              + (f", each fit time the shortest of {args.repeats}" if args.repeats > 1 else ""))
    if args.json == "-":
        json.dump({"about": header, "rows": rows}, sys.stdout, indent=1)
        print()
        return
    if args.json:
        from pathlib import Path
        path = Path(args.json)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps({"about": header, "rows": rows}, indent=1))
        temporary.replace(path)  # atomically
    print(header)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
