"""The child side of the benchmark: one measurement task, in its own process.

    python -m chainrule.bench.measure TASK.json RESULT.json

chainrule.bench.run starts one of these per implementation x workload x thread count (and
for the agreement check, the GEMM ceiling and the determinism runs), with
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS already set, so that
the thread count holds from the first import and the peak memory read here
(VmHWM) belongs to that one measurement. Arrays go to an .npz next to RESULT.
"""

from __future__ import annotations

import gc
import json
import math
import resource
import sys
import time
import traceback

import numpy as np

from . import estimators, peers
from .workloads import BY_NAME, initial_params, make_data

INFERENCE_RECORDS = {"W2": 16384, "W3": 16384, "W4": 2048}   # predict throughput: records per predict call
LATENCY_WORKLOAD = "W2"                 # single-record predict latency
LATENCY_IMPLEMENTATIONS = ("chainrule", "numpy", "torch")

# -- memory ---------------------------------------------------------------------------


def _status_mib(field: str):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def peak_rss_mib() -> float:
    """The process's peak resident set (VmHWM), MiB; ru_maxrss where /proc has none."""
    try:
        return _status_mib("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Lower VmHWM to the current RSS (Linux: clear_refs 5), so each dtype gets its own peak."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


# -- timing helpers -------------------------------------------------------------------------


def plan_timed_run(rate: float, seconds: float, num_records: int, batch_size: int) -> tuple:
    """(records, epochs) for about `seconds` at `rate` records/s: a prefix of whole batches, or whole epochs."""
    wanted = rate * seconds
    if wanted <= num_records:
        batches = max(1, round(wanted / batch_size))
        return min(num_records, batches * batch_size), 1
    return num_records, math.ceil(wanted / num_records)


def time_calls(function, seconds: float, min_calls: int = 1) -> tuple:
    """Call until `seconds` have passed (the caller has warmed it up); (calls, elapsed)."""
    calls, start = 0, time.perf_counter()
    while True:
        function()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= min_calls:
            return calls, elapsed


def median_latency_us(function, groups: int, calls_per_group: int = 50) -> float:
    """The median over `groups` of the mean time of `calls_per_group` back-to-back calls, microseconds."""
    for _ in range(calls_per_group):
        function()
    means = []
    for _ in range(groups):
        start = time.perf_counter()
        for _ in range(calls_per_group):
            function()
        means.append((time.perf_counter() - start) / calls_per_group)
    return float(np.median(means)) * 1e6


def _all_finite(arrays) -> bool:
    return all(np.isfinite(np.asarray(a)).all() for a in arrays)


# -- tasks ------------------------------------------------------------------------------------


def check(task: dict, arrays: dict) -> dict:
    """float64, one thread, records in order: costs, final parameters and predictions per workload."""
    settings, results = peers.set_num_threads(task["impl"], 1), {}
    for name in task["workloads"]:
        workload = BY_NAME[name]
        try:
            if workload.estimator:
                results[name] = estimators.check(task["impl"], workload, arrays)
                continue
            X, Y = make_data(workload, workload.check_records, np.float64)
            weights, biases = initial_params(workload, np.float64)
            model = peers.make(task["impl"], workload, weights, biases)
            costs = model.fit(X, Y, workload.check_epochs, workload.lr, workload.check_batch_size)
            weights, biases = model.parameters()
            arrays[f"{name}/costs"] = costs
            arrays[f"{name}/predict"] = np.asarray(model.predict(X)).reshape(len(X), -1)
            for layer, (weight, bias) in enumerate(zip(weights, biases)):
                arrays[f"{name}/W{layer + 1}"], arrays[f"{name}/b{layer + 1}"] = weight, bias
            results[name] = {"ok": True}
        except Exception:
            results[name] = {"ok": False, "error": traceback.format_exc(limit=3)}
    return dict(settings, workloads=results)


def _measure_rate(model, workload, X, Y, seconds: float) -> float:
    """Records/s from a fit on a prefix of the data, doubled until it lasts `seconds` or is all of it."""
    records = min(workload.warmup_records, len(X))
    while True:
        batch_size = min(workload.batch_size, records)
        start = time.perf_counter()
        model.fit(X[:records], Y[:records], 1, workload.lr, batch_size)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or records == len(X):
            return records / elapsed
        records = min(len(X), 2 * records)


def _time_training(impl: str, workload, dtype, seconds: float, repeats: int = 3) -> tuple:
    """Warm up, estimate the rate, then the best of up to `repeats` timed fits; returns (model, X, result).

    The first fit of a library can be slow for reasons that have nothing to do
    with training (lazy initialisation): it is not timed. Each timed fit lasts
    about seconds / repeats, on a prefix of whole batches or whole epochs over
    the data, in order; the repeats stop once `seconds` have been spent (so a
    W5 step longer than that is timed once). The best run is reported: other
    processes on the machine only ever make a run slower.
    """
    X, Y = make_data(workload, workload.num_records, dtype)
    weights, biases = initial_params(workload, dtype)
    model = peers.make(impl, workload, weights, biases)

    warmup = min(workload.warmup_records, len(X))
    start = time.perf_counter()
    model.fit(X[:warmup], Y[:warmup], 1, workload.lr, min(workload.batch_size, warmup))
    rate = warmup / (time.perf_counter() - start)
    if workload.batch_size / rate < seconds / repeats:  # else one batch is the run anyway
        rate = _measure_rate(model, workload, X, Y, seconds / 8)

    records, epochs = plan_timed_run(rate, seconds / repeats, len(X), workload.batch_size)
    timings = []
    while len(timings) < repeats and sum(timings) < seconds:
        start = time.perf_counter()
        costs = model.fit(X[:records], Y[:records], epochs, workload.lr, workload.batch_size)
        timings.append(time.perf_counter() - start)

    weights, biases = model.parameters()
    result = {"records": records, "epochs": epochs, "seconds": timings, "estimated_samples_per_s": rate,
              "samples_per_s": records * epochs / min(timings), "final_cost": float(costs[-1]),
              "finite": _all_finite([costs, *weights, *biases])}
    return model, X, result


def _time_inference(impl: str, workload, model, X, seconds: float, latency_groups: int) -> dict:
    """Predict throughput (W2, W4) and single-record latency (W2); the first call is checked, untimed."""
    result = {}
    if workload.name in INFERENCE_RECORDS:
        block = X[:INFERENCE_RECORDS[workload.name]]
        predictions = np.asarray(model.predict(block))
        if predictions.shape != (len(block), workload.num_outputs) or not _all_finite([predictions]):
            raise RuntimeError(f"predict returned shape {predictions.shape} or non-finite values")
        calls, elapsed = time_calls(lambda: model.predict(block), seconds)
        result["predict_records"] = len(block)
        result["predict_records_per_s"] = calls * len(block) / elapsed
    if workload.name == LATENCY_WORKLOAD and impl in LATENCY_IMPLEMENTATIONS:
        record = np.ascontiguousarray(X[:1])
        result["latency_us"] = median_latency_us(lambda: model.predict(record), latency_groups)
    return result


def train(task: dict, arrays: dict) -> dict:
    """Training throughput (then predict throughput and latency) per workload and dtype, with its peak memory.

    The peak is reset before each run, so a run's peak is its own (plus what is still resident).
    """
    impl = task["impl"]
    result = peers.set_num_threads(impl, task["threads"])
    result["rss_after_imports_mib"] = _status_mib("VmRSS")
    runs = []
    for name in task["workloads"]:
        workload = BY_NAME[name]
        for dtype in task["dtypes"]:
            run = {"workload": name, "dtype": dtype, "peak_reset": reset_peak_rss()}
            try:
                if workload.estimator:
                    run.update(estimators.train(impl, workload, np.dtype(dtype), task["seconds"],
                                                task.get("fit_epochs", estimators.FIT_EPOCHS)))
                else:
                    model, X, timing = _time_training(impl, workload, np.dtype(dtype), task["seconds"])
                    run.update(timing)
                    run.update(_time_inference(impl, workload, model, X, task["seconds"] / 2,
                                               task["latency_groups"]))
                    del model, X
            except Exception:
                run["error"] = traceback.format_exc(limit=4)
            run["peak_rss_mib"] = peak_rss_mib()
            runs.append(run)
    result["runs"] = runs
    return result


def ceiling(task: dict, arrays: dict) -> dict:
    """GFLOP/s of a large NumPy matmul (n x n by n x n), best of a few, checked against float64 first."""
    size, results = task["size"], {}
    rng = np.random.default_rng(0)
    for dtype in task["dtypes"]:
        A = rng.standard_normal((size, size)).astype(dtype)
        B = rng.standard_normal((size, size)).astype(dtype)
        C = A @ B
        reference = A[:16].astype(np.float64) @ B.astype(np.float64)
        error = float(np.abs(C[:16] - reference).max() / np.abs(reference).max())
        if error > (1e-4 if dtype == "float32" else 1e-12):
            raise RuntimeError(f"{dtype} matmul is wrong: relative error {error:.2e}")
        best = math.inf
        for _ in range(task["repeats"]):
            start = time.perf_counter()
            A @ B
            best = min(best, time.perf_counter() - start)
        results[dtype] = {"gflops": 2 * size**3 / best / 1e9, "size": size, "seconds": best}
    results["bandwidth"] = bandwidth(task["bandwidth_bytes"], task["repeats"])
    results["openblas_cores"] = peers.openblas_cores()
    return results


def bandwidth(nbytes: int, repeats: int) -> dict:
    """GB/s of a NumPy copy of nbytes into another nbytes (read + written), best of a few: the memory roof."""
    source = np.ones(nbytes // 8)
    target = np.empty_like(source)
    np.copyto(target, source)  # touches every page first
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return {"gbs": 2 * source.nbytes / best / 1e9, "bytes": source.nbytes, "seconds": best}


def determinism(task: dict, arrays: dict) -> dict:
    """chainrule: two shuffled runs from the same seed; bitwise equal? Saves run 1's parameters."""
    result = peers.set_num_threads("chainrule", task["threads"])
    runs = []
    for name in task["workloads"]:
        workload = BY_NAME[name]
        for dtype in task["dtypes"]:
            X, Y = make_data(workload, task["records"][name], np.dtype(dtype))
            finals = []
            for _ in range(2):
                model = peers.make("chainrule", workload, *initial_params(workload, np.dtype(dtype)))
                model.network.fit(X, Y, epochs=task["epochs"], lr=workload.lr, batch_size=workload.batch_size,
                                  shuffle=True, seed=11)
                weights, biases = model.parameters()
                finals.append(weights + biases)
            identical = all(a.tobytes() == b.tobytes() for a, b in zip(*finals))
            for index, array in enumerate(finals[0]):
                arrays[f"{name}/{dtype}/{index}"] = array
            runs.append({"workload": name, "dtype": dtype, "bitwise_identical": identical,
                         "records": len(X), "epochs": task["epochs"]})
    result["runs"] = runs
    return result


TASKS = {"check": check, "train": train, "ceiling": ceiling, "determinism": determinism}


def main(task_path: str, result_path: str) -> None:
    with open(task_path) as file:
        task = json.load(file)
    arrays = {}
    result = TASKS[task["kind"]](task, arrays)
    if arrays:
        np.savez(result_path + ".npz", **arrays)
    with open(result_path, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(*sys.argv[1:3])
