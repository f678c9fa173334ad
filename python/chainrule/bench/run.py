"""Benchmark chainrule against NumPy, PyTorch and scikit-learn on the same math, for the performance targets.

    python -m chainrule.bench                  # the full suite (about 4-5 minutes on 2 cores)
    python -m chainrule.bench --quick          # a smoke run, under a minute
    python -m chainrule.bench --quick --json - # the results as JSON on stdout (the progress on stderr)

Order of work: check that every implementation agrees with the NumPy reference
(chainrule.bench.numpy_mlp; float64, records in order); measure the GEMM
ceiling; time training, then predict, per implementation x workload x thread
count, each in its own subprocess (chainrule.bench.measure); check chainrule's
determinism; measure the ceiling again; print the report; with --out, write
results.{json,md} and, with matplotlib, ratios.png there; with --json, the
results as JSON. An implementation that disagrees on a workload is not timed on it.
torch and scikit-learn are measured where installed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import importlib.metadata
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from . import peers
from .report import PEERS, rate, render_markdown, write_chart
from .workloads import BY_NAME, WORKLOADS

PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent  # the directory that holds chainrule/
TOLERANCE = 1e-9            # agreement: relative, float64
DTYPES = ("float32", "float64")
DISTRIBUTIONS = {"numpy": "numpy", "chainrule": "chainrule", "torch": "torch", "sklearn": "scikit-learn",
                 "matplotlib": "matplotlib"}


# -- the machine and the libraries -----------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or cpu
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # OpenBLAS reads these when it loads (the kernel set, cache sizes); the thread counts are the run's own.
    openblas_environment = {name: value for name, value in sorted(os.environ.items())
                            if name.startswith("OPENBLAS_") and name != "OPENBLAS_NUM_THREADS"}
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "platform": platform.platform(), "python": platform.python_version(),
            "openblas_environment": openblas_environment}


def versions() -> dict:
    found = {}
    for name, distribution in DISTRIBUTIONS.items():
        try:
            found[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


# -- children ------------------------------------------------------------------------------------


def _busy_cpu_seconds() -> float:
    """CPU seconds spent outside idle by the whole machine since boot (/proc/stat), 0 where unknown."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class ChildRun:
    result: dict = None       # what measure.py returned
    arrays: dict = None       # its .npz, if any
    error: str = None         # why there is no result
    wall: float = 0.0         # seconds, start to exit
    other_cpus: float = 0.0   # CPUs other processes kept busy meanwhile, on average (contention)


class Child:
    """Runs chainrule.bench.measure on one task in a fresh process with `threads` threads everywhere."""

    def __init__(self, workdir: Path, timeout: float):
        self.workdir, self.timeout, self.numbers = workdir, timeout, itertools.count()
        self.chainrule_builds, self.chainrule_set_num_threads = set(), set()  # as the children saw them

    def run(self, task: dict, threads: int) -> ChildRun:
        number = next(self.numbers)
        task_path = self.workdir / f"task{number}.json"
        result_path = self.workdir / f"result{number}.json"
        task_path.write_text(json.dumps(task))
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        # The child imports the chainrule this process runs, wherever the child's working directory is.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        busy, mine, start = _busy_cpu_seconds(), _children_cpu_seconds(), time.perf_counter()
        try:
            finished = subprocess.run([sys.executable, "-m", "chainrule.bench.measure", str(task_path), str(result_path)],
                                      env=env, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return ChildRun(error=f"timed out after {self.timeout:.0f} s", wall=time.perf_counter() - start)
        wall = time.perf_counter() - start
        # The machine's busy time minus the child's own: what others took from this measurement.
        others = (_busy_cpu_seconds() - busy) - (_children_cpu_seconds() - mine)
        run = ChildRun(wall=wall, other_cpus=max(0.0, others / wall))
        if finished.returncode != 0 or not result_path.exists():
            run.error = f"exit {finished.returncode}: {finished.stderr.strip()[-1500:]}"
            return run
        arrays_path = Path(str(result_path) + ".npz")
        run.arrays = dict(np.load(arrays_path)) if arrays_path.exists() else None
        run.result = json.loads(result_path.read_text())
        if "chainrule_build" in run.result:
            self.chainrule_builds.add(run.result["chainrule_build"])
            self.chainrule_set_num_threads.add(run.result["chainrule_set_num_threads"])
        return run


# -- agreement ------------------------------------------------------------------------------------


def relative_error(value, reference) -> float:
    """max |value - reference| / max |reference| (absolute where the reference is all zeros); inf for NaN."""
    if value is None or np.shape(value) != np.shape(reference):
        return float("inf")
    value, reference = np.asarray(value, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    scale = np.abs(reference).max(initial=0.0)
    error = float(np.abs(value - reference).max(initial=0.0) / (scale if scale > 0 else 1.0))
    return error if np.isfinite(error) else float("inf")


def compare(arrays: dict, reference: dict, workload: str) -> dict:
    """The largest relative error of the costs, the parameters and the predictions on one workload."""
    errors = {"cost": 0.0, "params": 0.0, "predict": 0.0}
    for key, expected in reference.items():
        name, _, item = key.partition("/")
        if name == workload:
            kind = {"costs": "cost", "predict": "predict"}.get(item, "params")
            errors[kind] = max(errors[kind], relative_error(arrays.get(key), expected))
    return errors


def check_agreement(child: Child, implementations: list, workloads: list) -> dict:
    """Every implementation against NumPy's (scikit-learn's estimator on an estimator workload), float64,
    one thread: {impl: {workload: verdict}}; a verdict's "status" says why an implementation is not timed."""
    through_estimators = [name for name in workloads if BY_NAME[name].estimator]
    print(f"Agreement (float64, records in order, relative tolerance {TOLERANCE:g}) vs chainrule.bench.numpy_mlp"
          + (f" ({', '.join(through_estimators)}: vs scikit-learn's MLPRegressor)" if through_estimators else "")
          + ":")
    # Nothing is timed here: the children (one thread each) run side by side, one per core.
    workers = max(1, min(len(implementations), len(os.sched_getaffinity(0))))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {impl: pool.submit(child.run, {"kind": "check", "impl": impl, "workloads": workloads}, 1)
                   for impl in implementations}
        outputs = {impl: future.result() for impl, future in futures.items()}
    agreement = {}
    for impl in implementations:
        result, arrays, error = outputs[impl].result, outputs[impl].arrays, outputs[impl].error
        agreement[impl] = {}
        for name in workloads:
            verdict = {"agrees": False}
            ref_impl = "sklearn" if BY_NAME[name].estimator else "numpy"
            reference = outputs.get(ref_impl)
            own = {} if error else result["workloads"][name]
            if "status" in own:  # not applicable to this implementation, or it lacks a dependency
                verdict.update(status=own["status"], error=own["error"])
            elif reference is None:
                verdict.update(status="needs scikit-learn", error="scikit-learn, the reference, is not installed")
            elif reference.error or not reference.result["workloads"][name]["ok"]:
                verdict["error"] = (f"the {ref_impl} reference failed: "
                                    + (reference.error or reference.result["workloads"][name]["error"]))
            elif error or not result["workloads"][name]["ok"]:
                verdict["error"] = error or result["workloads"][name]["error"]
            else:
                verdict.update(compare(arrays, reference.arrays, name))
                verdict["agrees"] = max(verdict["cost"], verdict["params"], verdict["predict"]) <= TOLERANCE
                if not verdict["agrees"]:
                    verdict["error"] = (f"relative error: costs {verdict['cost']:.2e}, parameters "
                                        f"{verdict['params']:.2e}, predictions {verdict['predict']:.2e}")
            agreement[impl][name] = verdict
        line = "  ".join(f"{name} {'ok' if v['agrees'] else v.get('status', 'DISAGREES')}"
                         for name, v in agreement[impl].items())
        print(f"  {impl:<10} {line}")
        for name, verdict in agreement[impl].items():
            if not verdict["agrees"] and verdict.get("status") != "not applicable":
                print(f"    {impl} on {name}: {verdict['error'].strip()}")
    return agreement


# -- the measurements ------------------------------------------------------------------------------


def measure_ceilings(child: Child, thread_counts: list, dtypes: list, quick: bool) -> dict:
    """GFLOP/s of a large NumPy matmul at each thread count: the roof for W4 and W5."""
    ceilings = {}
    for threads in thread_counts:
        task = {"kind": "ceiling", "dtypes": dtypes, "size": 1024 if quick else 2048, "repeats": 3 if quick else 5,
                "bandwidth_bytes": (64 if quick else 256) << 20}
        run = child.run(task, threads)
        if run.error:
            print(f"  GEMM ceiling at {threads} thread(s) failed: {run.error}")
            continue
        ceilings[threads] = {dtype: run.result[dtype]["gflops"] for dtype in dtypes}
        ceilings[threads]["openblas_cores"] = run.result["openblas_cores"]
        ceilings[threads]["bandwidth_gbs"] = run.result["bandwidth"]["gbs"]
        text = ", ".join(f"{dtype} {ceilings[threads][dtype]:.1f}" for dtype in dtypes)
        print(f"GEMM ceiling, NumPy {task['size']}^3 matmul, {threads} thread(s): {text} GFLOP/s; memory copy "
              f"{ceilings[threads]['bandwidth_gbs']:.1f} GB/s   [others used {run.other_cpus:.1f} CPUs]")
    return ceilings


def measure_training(child: Child, options, implementations: list, agreement: dict) -> list:
    """One row per implementation x workload x threads x dtype, timed only where the check passed.

    A child per implementation x workload x thread count; with --quick, one per
    implementation x thread count for all its workloads (fewer imports to wait for).
    """
    rows, timed = [], {impl: [] for impl in peers.IMPLEMENTATIONS}
    for impl in peers.IMPLEMENTATIONS:
        for workload in options.workloads:
            status = ("not installed" if impl not in implementations else
                      agreement[impl][workload].get("status", "disagrees") if not agreement[impl][workload]["agrees"]
                      else None)
            if status is None:
                timed[impl].append(workload)
                continue
            rows += [{"impl": impl, "workload": workload, "threads": threads, "dtype": dtype, "status": status}
                     for threads in options.threads for dtype in options.dtypes]
    if options.quick:
        jobs = [(impl, threads, timed[impl]) for threads in options.threads for impl in peers.IMPLEMENTATIONS]
    else:
        jobs = [(impl, threads, [workload]) for workload in options.workloads for threads in options.threads
                for impl in peers.IMPLEMENTATIONS if workload in timed[impl]]

    print("Training (samples/s), then predict (records/s) on W2, W3 and W4:")
    measured = []
    for round_index in range(options.rounds):
        if options.rounds > 1:
            print(f" round {round_index + 1} of {options.rounds}")
        measured += _run_training_jobs(child, options, jobs)
    return rows + best_of_rounds(measured)


def _run_training_jobs(child: Child, options, jobs: list) -> list:
    """One child per job, in order; one row per workload x dtype it timed."""
    rows = []
    for impl, threads, workloads in jobs:
        if not workloads:
            continue
        task = {"kind": "train", "impl": impl, "workloads": workloads, "threads": threads,
                "dtypes": options.dtypes, "seconds": options.seconds,
                "latency_groups": 50 if options.quick else 400, "fit_epochs": 10 if options.quick else 200}
        run = child.run(task, threads)
        if run.error:
            print(f"  {'+'.join(workloads)} {impl} {threads}t: ERROR {run.error}")
            rows += [{"impl": impl, "workload": workload, "threads": threads, "dtype": dtype, "status": "error",
                      "error": run.error} for workload in workloads for dtype in options.dtypes]
            continue
        extras = {key: value for key, value in run.result.items() if key != "runs"}
        extras.update(impl=impl, threads=threads, other_cpus=run.other_cpus)
        new_rows = [_training_row(extras, measured) for measured in run.result["runs"]]
        rows += new_rows
        summary = ", ".join(f"{row['workload']} {row['dtype']} {rate(row.get('samples_per_s'))}"
                            for row in new_rows)
        print(f"  {impl:<9} {threads}t: {summary}   [{run.wall:.1f} s, others used {run.other_cpus:.1f} CPUs]")
    return rows


def best_of_rounds(rows: list) -> list:
    """One row per implementation x workload x threads x dtype from the rows of all rounds.

    The round with the most samples/s gives the row (its timings, memory and
    `other_cpus`); predict throughput is the best of the rounds and latency
    the lowest, for the same reason as within a round: other processes only
    ever slow a run down. A round that failed (error, non-finite) wins over
    any speed: the row reports the failure. Every round's samples/s stays in
    `rounds_samples_per_s`.
    """
    groups = {}
    for row in rows:
        groups.setdefault((row["impl"], row["workload"], row["threads"], row["dtype"]), []).append(row)
    merged = []
    for group in groups.values():
        failed = [row for row in group if row["status"] != "ok"]
        if failed:
            merged.append(failed[0])
            continue
        best = dict(max(group, key=lambda row: row["samples_per_s"]))
        if len(group) > 1:
            best["rounds_samples_per_s"] = [row["samples_per_s"] for row in group]
            for key, pick in (("predict_records_per_s", max), ("latency_us", min)):
                values = [row[key] for row in group if key in row]
                if values:
                    best[key] = pick(values)
        merged.append(best)
    return merged


def _training_row(base: dict, run: dict) -> dict:
    row = dict(base, **run)
    if "error" in run:
        row["status"] = "error"
    elif not run["finite"]:
        row["status"] = "non-finite"          # a diverged run has no speed worth reporting
    else:
        row["status"] = "ok"
    return row


def _with_flops(row: dict, ceiling: dict) -> dict:
    """Adds GFLOP/s (GEMM multiply-adds x 2 per record) and its share of the ceiling to a timed row."""
    if row["status"] != "ok":
        return row
    gflops = row["samples_per_s"] * BY_NAME[row["workload"]].flops_per_record() / 1e9
    row = dict(row, gflops=gflops)
    if ceiling.get(row["dtype"]):
        row["pct_ceiling"] = 100 * gflops / ceiling[row["dtype"]]
    return row


def check_determinism(child: Child, options) -> dict:
    """chainrule: bitwise equal runs at each thread count, and the largest difference across counts."""
    records = {"W2": 1024, "W4": 256} if options.quick else {"W2": 4096, "W4": 1024, "W5": 1024}
    records = {name: count for name, count in records.items() if name in options.workloads}
    task = {"kind": "determinism", "workloads": list(records), "dtypes": options.dtypes, "epochs": 1,
            "records": records}
    runs, finals = [], {}
    for threads in options.threads:
        run = child.run(dict(task, threads=threads), threads)
        if run.error:
            print(f"  determinism at {threads} thread(s) failed: {run.error}")
            continue
        runs += [dict(measured, threads=threads) for measured in run.result["runs"]]
        finals[threads] = run.arrays
    across = []
    if len(finals) >= 2:
        (low, low_arrays), (high, high_arrays) = sorted(finals.items())[0], sorted(finals.items())[-1]
        for name in task["workloads"]:
            for dtype in options.dtypes:
                prefix = f"{name}/{dtype}/"
                keys = [key for key in low_arrays if key.startswith(prefix)]
                difference = max(float(np.abs(low_arrays[k].astype(np.float64) - high_arrays[k]).max())
                                 for k in keys)
                across.append({"workload": name, "dtype": dtype, "threads": [low, high],
                               "max_abs_param_diff": difference})
    for run in runs:
        print(f"  determinism {run['workload']} {run['dtype']} {run['threads']}t: "
              f"bitwise identical = {run['bitwise_identical']}")
    for item in across:
        print(f"  {item['workload']} {item['dtype']}: max |param difference| {item['threads'][0]} vs "
              f"{item['threads'][1]} threads = {item['max_abs_param_diff']:.3g}")
    return {"records": task["records"], "epochs": task["epochs"], "runs": runs, "across_threads": across}


def ratios(rows: list) -> list:
    """chainrule's speed / each peer's, training and predict, where both have a speed."""
    speed = {(r["impl"], r["workload"], r["threads"], r["dtype"]): r for r in rows if r["status"] == "ok"}
    found = []
    for (impl, workload, threads, dtype), mine in speed.items():
        if impl != "chainrule":
            continue
        for peer in PEERS:
            theirs = speed.get((peer, workload, threads, dtype))
            if theirs is None:
                continue
            item = {"workload": workload, "threads": threads, "dtype": dtype, "peer": peer,
                    "training": mine["samples_per_s"] / theirs["samples_per_s"]}
            if "predict_records_per_s" in mine and "predict_records_per_s" in theirs:
                item["predict"] = mine["predict_records_per_s"] / theirs["predict_records_per_s"]
            if "latency_us" in mine and "latency_us" in theirs:
                item["latency"] = theirs["latency_us"] / mine["latency_us"]
            found.append(item)
    return found


# -- main ---------------------------------------------------------------------------------------------------


def parse_args(argv=None, prog=None, default_out=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: W1-W4, 1 thread, short timings")
    parser.add_argument("--workloads", nargs="+", choices=list(BY_NAME),
                        help="default: all (--quick: W1-W4, as one W5 step is ~120 GFLOP)")
    parser.add_argument("--threads", nargs="+", type=int, help="thread counts (default 1 2; --quick: 1)")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--seconds", type=float, help="length of each timed run (default 1.0; --quick: 0.1)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time every implementation x workload x thread count this many times, one full "
                             "pass after another, and keep each one's best round (default 1)")
    parser.add_argument("--out", type=Path, default=default_out,
                        help="write results.{json,md} and ratios.png to this directory"
                             + (f" (default {default_out})" if default_out else " (default: write no files)"))
    parser.add_argument("--json", metavar="PATH",
                        help="write the results as JSON to PATH, or to stdout for '-' (the progress and the "
                             "report then go to stderr)")
    options = parser.parse_args(argv)
    if options.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {options.rounds}")
    options.argv = list(sys.argv[1:] if argv is None else argv)
    options.prog = parser.prog
    options.threads = options.threads or ([1] if options.quick else [1, 2])
    options.seconds = options.seconds or (0.1 if options.quick else 1.0)
    order = [w.name for w in WORKLOADS]
    options.workloads = options.workloads or (order[:4] if options.quick else order)
    options.workloads = sorted(set(options.workloads), key=order.index)
    return options


def collect(options, implementations: list) -> dict:
    """Every measurement, in order, into the dict that becomes results.json."""
    results = {"tolerance": TOLERANCE, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "command": " ".join([options.prog, *options.argv]),
               "machine": machine(), "versions": versions(), "load_average_at_start": os.getloadavg(),
               "options": {"quick": options.quick, "workloads": options.workloads, "threads": options.threads,
                           "dtypes": options.dtypes, "seconds": options.seconds,
                           "rounds": options.rounds}}
    with tempfile.TemporaryDirectory(prefix="chainrule-bench-") as workdir:
        child = Child(Path(workdir), timeout=120 if options.quick else 900)
        results["agreement"] = check_agreement(child, implementations, options.workloads)
        before = measure_ceilings(child, options.threads, options.dtypes, options.quick)
        rows = measure_training(child, options, implementations, results["agreement"])
        results["determinism"] = check_determinism(child, options)
        after = measure_ceilings(child, options.threads, options.dtypes, options.quick)
    results["load_average_at_end"] = os.getloadavg()
    # Other processes only ever lower a measured ceiling: keep the higher of the two.
    results["ceiling_gflops_measured"] = {"before": before, "after": after}
    results["ceiling_gflops"] = {threads: {dtype: max(before.get(threads, {}).get(dtype, 0.0),
                                                      after.get(threads, {}).get(dtype, 0.0))
                                           for dtype in options.dtypes} for threads in options.threads}
    results["openblas_cores"] = sorted({f"{library} {core or 'not read'}" for by in (before, after)
                                        for at in by.values() for library, core in at["openblas_cores"].items()})
    results["bandwidth_gbs"] = {threads: max(before.get(threads, {}).get("bandwidth_gbs", 0.0),
                                             after.get(threads, {}).get("bandwidth_gbs", 0.0))
                                for threads in options.threads}
    results["training"] = [_with_flops(row, results["ceiling_gflops"].get(row["threads"], {})) for row in rows]
    results["ratios"] = ratios(results["training"])
    results["chainrule_builds"] = sorted(child.chainrule_builds)
    results["chainrule_set_num_threads"] = sorted(child.chainrule_set_num_threads)
    if len(child.chainrule_builds) > 1:
        print("WARNING: chainrule was reinstalled during the run; the results mix these builds: "
              + "; ".join(results["chainrule_builds"]))
    return results


def main(argv: Optional[List[str]] = None, prog: str = "python -m chainrule.bench",
         default_out: Optional[Path] = None) -> None:
    """The command line: ``python -m chainrule.bench``; bench/run.py in a checkout calls it with its own defaults.

    Checks that every implementation agrees, then times them and prints the
    report (docs/performance.md explains it). A whole run takes about 5
    minutes a round; ``--quick`` is a smoke run under a minute.

    Parameters
    ----------
    argv : list of str, optional
        The options (default: ``sys.argv[1:]``): ``--quick``, ``--workloads``,
        ``--threads``, ``--dtypes``, ``--seconds``, ``--rounds``, ``--out``,
        ``--json PATH`` (``-`` for standard output); ``--help`` lists them.
    prog : str, default='python -m chainrule.bench'
        The program name shown in the help and in the results.
    default_out : pathlib.Path, optional
        Where ``--out`` writes when not given (default: no files).

    Raises
    ------
    SystemExit
        After ``--help``, on a bad option, or when chainrule is not importable.

    Examples
    --------
    >>> import contextlib, io
    >>> from chainrule.bench.run import main
    >>> text = io.StringIO()
    >>> with contextlib.redirect_stdout(text):
    ...     try:
    ...         main(["--help"])
    ...     except SystemExit as exit:
    ...         print("exit status", exit.code)
    >>> text.getvalue().startswith("usage: python -m chainrule.bench [-h] [--quick]")
    True
    >>> text.getvalue().splitlines()[-1]
    'exit status 0'

    From a shell: ``python -m chainrule.bench --quick``.
    """
    options = parse_args(argv, prog, default_out)
    if options.json == "-":
        # stdout carries the JSON alone: everything printed along the way goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            results = run(options)
        json.dump(results, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        run(options)


def run(options) -> dict:
    """Measures everything, prints the report, writes the files asked for; returns the results."""
    started = time.perf_counter()
    implementations = [impl for impl in peers.IMPLEMENTATIONS if peers.is_installed(impl)]
    if "chainrule" not in implementations:
        sys.exit("chainrule is not importable: install it first (pip install .)")
    print(f"{machine()['cpu']}, {machine()['usable_cpus']} CPUs; "
          + ", ".join(f"{name} {version}" for name, version in versions().items() if version))
    missing = [impl for impl in peers.IMPLEMENTATIONS if impl not in implementations]
    if missing:
        print("not installed, not measured: " + ", ".join(missing))

    results = collect(options, implementations)
    results["wall_seconds"] = time.perf_counter() - started
    markdown = render_markdown(results)
    print()
    print(markdown)
    if options.out is not None:
        options.out.mkdir(parents=True, exist_ok=True)
        (options.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
        (options.out / "results.md").write_text(markdown)
        print(write_chart(results, options.out / "ratios.png"))
        print(f"wrote {options.out / 'results.json'} and {options.out / 'results.md'}")
    if options.json not in (None, "-"):
        Path(options.json).write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {options.json}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
