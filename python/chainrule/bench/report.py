"""The markdown report and the PNG chart, made from the results run.py collected.

`results` is the dict run.py writes to results.json; its "training" rows are
keyed by implementation, workload, thread count and dtype, with a "status"
that is "ok" when a speed was measured, or says why there is none.
"""

from __future__ import annotations

from pathlib import Path

from .measure import INFERENCE_RECORDS
from .peers import IMPLEMENTATIONS
from .workloads import BY_NAME

PEERS = tuple(impl for impl in IMPLEMENTATIONS if impl != "chainrule")
CONTENDED = 0.25        # CPUs used by other processes during a measurement that earn a cell its '*'


# -- formatting ---------------------------------------------------------------------------------


def rate(value) -> str:
    if value is None:
        return "-"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _ratio(value) -> str:
    return "-" if value is None else (f"{value:.3g}x" if value < 100 else f"{value:.0f}x")


def _percent(value) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}%" if value >= 10 else f"{value:.2g}%"


def _table(header: list, lines: list) -> list:
    return (["| " + " | ".join(str(cell) for cell in header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(cell) for cell in line) + " |" for line in lines] + [""])


def _contended(row) -> bool:
    return row is not None and row.get("other_cpus", 0.0) >= CONTENDED


def _cell(row, value, timed=True) -> str:
    """The value of an 'ok' row (a timing starred if other processes took CPUs meanwhile), else why there is none."""
    if row is None:
        return "-"
    if row["status"] != "ok":
        return row["status"]
    return value(row) + (" *" if timed and _contended(row) else "")


class _Grid:
    """Rows of workload x dtype x threads, one column per implementation, then chainrule's ratios."""

    def __init__(self, results: dict):
        self.options = results["options"]
        self.rows = {(r["impl"], r["workload"], r["threads"], r["dtype"]): r for r in results["training"]}
        self.ratios = {(r["peer"], r["workload"], r["threads"], r["dtype"]): r for r in results["ratios"]}

    def table(self, value, ratio=None, workloads=None, timed=True) -> list:
        header = ["workload", "dtype", "threads", *IMPLEMENTATIONS] + ([f"x {p}" for p in PEERS] if ratio else [])
        lines = []
        for workload in self.options["workloads"]:
            if workloads and workload not in workloads:
                continue
            for dtype in self.options["dtypes"]:
                for threads in self.options["threads"]:
                    lines.append(self._line(workload, dtype, threads, value, ratio, timed))
        return _table(header, lines)

    def _line(self, workload, dtype, threads, value, ratio, timed) -> list:
        line = [workload, dtype, threads]
        line += [_cell(self.rows.get((impl, workload, threads, dtype)), value, timed) for impl in IMPLEMENTATIONS]
        for peer in PEERS if ratio else ():
            found = self.ratios.get((peer, workload, threads, dtype), {}).get(ratio)
            both = (self.rows.get(("chainrule", workload, threads, dtype)), self.rows.get((peer, workload, threads, dtype)))
            line.append(_ratio(found) + (" *" if found is not None and any(map(_contended, both)) else ""))
        return line


# -- sections -------------------------------------------------------------------------------------


def _header(results: dict) -> list:
    options, machine = results["options"], results["machine"]
    versions = ", ".join(f"{name} {version or 'not installed'}" for name, version in results["versions"].items())
    builds = results["chainrule_builds"]
    loads = [", ".join(f"{x:.2f}" for x in results[key]) for key in ("load_average_at_start", "load_average_at_end")]
    ceilings = "; ".join(f"{threads} thread(s): " + ", ".join(f"{dtype} {gflops:.1f}" for dtype, gflops in by.items())
                         for threads, by in results["ceiling_gflops"].items())
    return [f"# chainrule benchmark ({'quick' if options['quick'] else 'full'} run)", "",
            f"- date: {results['date']}",
            f"- machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs ({machine['logical_cpus']} "
            f"logical), {machine['platform']}",
            f"- python {machine['python']}; {versions}",
            f"- chainrule build(s) seen by the measurements: {'; '.join(builds)}"
            + (" (**chainrule was reinstalled during the run: the results mix builds**)" if len(builds) > 1 else ""),
            "- chainrule.set_num_threads exists: " + " / ".join(str(f) for f in results["chainrule_set_num_threads"]),
            f"- command: `{results['command']}`, wall time {results['wall_seconds']:.0f} s",
            f"- timings: best of {options.get('rounds', 1)} round(s) of every implementation x workload x thread "
            "count, one full pass after another",
            f"- load average (1, 5, 15 min) at start {loads[0]}, at end {loads[1]}",
            f"- GEMM ceiling (NumPy matmul, GFLOP/s, the higher of before and after the timings): {ceilings}",
            f"- OpenBLAS kernel sets: {_openblas(results)}", "",
            f"`*`: other processes kept at least {CONTENDED} CPUs busy on average during that measurement "
            "(`other_cpus` in the JSON): the number is pessimistic, very much so with 2 threads on 2 cores.", ""]


def _openblas(results: dict) -> str:
    """Which kernel set each OpenBLAS ran, and whether the environment chose it."""
    cores = ", ".join(results.get("openblas_cores", [])) or "not read"
    environment = results["machine"].get("openblas_environment", {})
    how = "chosen by OPENBLAS_CORETYPE" if "OPENBLAS_CORETYPE" in environment else "OpenBLAS's own pick for this CPU"
    settings = ", ".join(f"{name}={value}" for name, value in environment.items())
    return f"{cores} ({how}" + (f"; environment: {settings})" if settings else ")")


def _agreement(results: dict) -> list:
    lines = []
    for impl, verdicts in results["agreement"].items():
        cells = []
        for name in results["options"]["workloads"]:
            verdict = verdicts[name]
            if "cost" not in verdict:
                cells.append(verdict.get("status", "**error**"))
                continue
            worst = max(verdict["cost"], verdict["params"], verdict["predict"])
            cells.append(f"{'yes' if verdict['agrees'] else '**NO**'} ({worst:.1e})")
        lines.append([impl] + cells)
    return ([f"## Agreement (float64, records in order, vs chainrule.bench.numpy_mlp, relative tolerance "
             f"{results['tolerance']:g}; worst relative error)", ""]
            + _table(["implementation"] + results["options"]["workloads"], lines))


def _training(results: dict, grid: _Grid) -> list:
    after_imports = {row["impl"]: row["rss_after_imports_mib"] for row in results["training"]
                     if row.get("rss_after_imports_mib") is not None}
    return (["## Training throughput (samples/s) and chainrule's ratio to each peer", ""]
            + grid.table(lambda r: rate(r["samples_per_s"]), ratio="training")
            + ["## Training GFLOP/s (% of the GEMM ceiling)", ""]
            + grid.table(lambda r: f"{r['gflops']:.3g} ({_percent(r.get('pct_ceiling'))})")
            + ["## Peak memory of the process (MiB; training + predict of that dtype)", ""]
            + grid.table(lambda r: f"{r['peak_rss_mib']:.0f}", timed=False)
            + ["Resident after imports, before any data (MiB): "
               + ", ".join(f"{impl} {mib:.0f}" for impl, mib in after_imports.items()) + ".", ""])


def _inference(results: dict, grid: _Grid) -> list:
    out = []
    predicted = tuple(w for w in INFERENCE_RECORDS if w in results["options"]["workloads"])
    if predicted:
        per_call = ", ".join(f"{w}: {INFERENCE_RECORDS[w]}" for w in predicted)
        out += [f"## Predict throughput (records/s; {per_call} records per call) and chainrule's ratio", ""]
        out += grid.table(lambda r: rate(r.get("predict_records_per_s")), ratio="predict", workloads=predicted)
    if "W2" in results["options"]["workloads"]:
        lines = []
        for dtype in results["options"]["dtypes"]:
            for threads in results["options"]["threads"]:
                lines.append([dtype, threads] + [
                    _cell(grid.rows.get((impl, "W2", threads, dtype)), lambda r: f"{r['latency_us']:.2f}")
                    for impl in ("chainrule", "numpy", "torch")])
        out += ["## Single-record predict latency, W2 network, from Python (microseconds, median)", ""]
        out += _table(["dtype", "threads", "chainrule", "numpy", "torch"], lines)
    return out


def _estimators(results: dict, grid: _Grid) -> list:
    """The estimator workloads: seconds per epoch of each library's fit, and the Python layer's share."""
    lines = []
    for workload in results["options"]["workloads"]:
        if not BY_NAME[workload].estimator:
            continue
        for dtype in results["options"]["dtypes"]:
            for threads in results["options"]["threads"]:
                ours, theirs = (grid.rows.get((impl, workload, threads, dtype)) for impl in ("chainrule", "sklearn"))
                ratio = grid.ratios.get(("sklearn", workload, threads, dtype), {}).get("training")
                layer = ours.get("python_layer") if ours and ours["status"] == "ok" else None
                lines.append([workload, dtype, threads,
                              _cell(ours, lambda r: f"{1e3 * r['seconds_per_epoch']:.1f} ({r['epochs']})"),
                              _cell(theirs, lambda r: f"{1e3 * r['seconds_per_epoch']:.1f} ({r['epochs']})"),
                              _ratio(ratio),
                              _cell(ours, lambda r: f"{r['gflops']:.3g} ({_percent(r.get('pct_ceiling'))})"),
                              "-" if layer is None else
                              f"{layer['estimator_seconds']:.2f} s vs {layer['core_seconds']:.2f} s: "
                              f"{layer['overhead_pct']:+.1f}% ({layer['epochs']} epochs; parameters differ by "
                              f"{layer['max_abs_param_diff']:.2g})"])
    if not lines:
        return []
    return (["## Through the scikit-learn estimators: milliseconds per epoch, and the Python layer", "",
             "Each fit runs max_iter epochs with tol=0 (the epochs in brackets), shuffled, from random_state=0; "
             "per epoch = the best fit's time / its epochs, input checks and set-up included. The Python "
             "layer: a fit through chainrule.sklearn.MLPRegressor against chainrule.Network.fit taking the same "
             "steps (same initial weights, seed, Adam in scikit-learn's form), best of 3 each, alternated.", ""]
            + _table(["workload", "dtype", "threads", "chainrule ms/epoch", "scikit-learn ms/epoch", "x sklearn",
                      "chainrule GFLOP/s (% of ceiling)", "Python layer: estimator vs Network.fit"], lines))


def _time(seconds: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _roofline(results: dict, grid: _Grid) -> list:
    """chainrule's training step against the two roofs measured in the same run: the GEMM ceiling
    (compute) and a large copy's bandwidth (memory); the higher of the two times is the bound."""
    bandwidth = results.get("bandwidth_gbs", {})
    lines = []
    for workload in results["options"]["workloads"]:
        spec = BY_NAME[workload]
        for dtype in results["options"]["dtypes"]:
            itemsize = 4 if dtype == "float32" else 8
            flops, nbytes = spec.flops_per_record() * spec.batch_size, spec.bytes_per_step(itemsize)
            for threads in results["options"]["threads"]:
                row = grid.rows.get(("chainrule", workload, threads, dtype))
                # keyed by the thread count: an int, or its string once read back from results.json
                ceiling = results["ceiling_gflops"].get(threads, results["ceiling_gflops"].get(str(threads), {}))
                ceiling = ceiling.get(dtype)
                gbs = bandwidth.get(threads, bandwidth.get(str(threads)))
                if row is None or row["status"] != "ok" or not ceiling or not gbs:
                    continue
                measured = spec.batch_size / row["samples_per_s"]
                compute, memory = flops / (ceiling * 1e9), nbytes / (gbs * 1e9)
                bound, binds = (compute, "compute") if compute >= memory else (memory, "memory")
                lines.append([workload, dtype, threads, f"{flops:,}", f"{nbytes:,}", _time(compute), _time(memory),
                              binds, _time(measured) + (" *" if _contended(row) else ""),
                              _percent(100 * bound / measured)])
    if not lines:
        return []
    roofs = "; ".join(f"{threads} thread(s): {gbs:.1f} GB/s" for threads, gbs in bandwidth.items())
    return (["## Roofline: chainrule's training step against the compute and memory roofs of this run", "",
             "FLOP: 2 per multiply-add of the step's GEMMs (as above). Bytes: the batch's records and targets "
             "read once and the parameters read and written once, the traffic a step cannot avoid if nothing "
             "stays in cache. Compute roof: the GEMM ceiling; memory roof: a NumPy copy of a large array "
             f"(read + written; {roofs}). The bound is the higher of the two times; the last column is the "
             "bound over the measured time. Where it is small, neither roof binds: a step's fixed costs and "
             "dependency chain do (docs/performance.md). Above 100%, the step beat a roof of this run: its "
             "parameters stayed in cache, or the roof's own measurement was slowed.", ""]
            + _table(["workload", "dtype", "threads", "FLOP/step", "bytes/step", "compute roof", "memory roof",
                      "binds", "measured/step", "% of bound"], lines))


def _determinism(results: dict) -> list:
    determinism, options = results["determinism"], results["options"]
    if not determinism["records"]:  # none of the workloads run has a determinism check
        return []
    identical = {(r["workload"], r["dtype"], r["threads"]): r["bitwise_identical"] for r in determinism["runs"]}
    across = {(a["workload"], a["dtype"]): a["max_abs_param_diff"] for a in determinism["across_threads"]}
    lines = []
    for name in determinism["records"]:
        for dtype in options["dtypes"]:
            same = [identical.get((name, dtype, threads)) for threads in options["threads"]]
            lines.append([name, dtype] + ["-" if s is None else "yes" if s else "**no**" for s in same]
                         + [f"{across[(name, dtype)]:.3g}" if (name, dtype) in across else "-"])
    records = ", ".join(f"{name} {count}" for name, count in determinism["records"].items())
    return (["## Determinism (chainrule; shuffled with a fixed seed, twice per thread count)", "",
             f"Records per run: {records}; {determinism['epochs']} epoch.", ""]
            + _table(["workload", "dtype"] + [f"bitwise identical, {t} thread(s)" for t in options["threads"]]
                     + ["max abs parameter difference, fewest vs most threads"], lines))


def _slower(results: dict) -> list:
    slower = [f"- {r['workload']} {r['dtype']} {r['threads']} thread(s), {metric}: {r[metric]:.3g}x {r['peer']}"
              for r in results["ratios"] for metric in ("training", "predict", "latency") if r.get(metric, 1.0) < 1.0]
    return ["## Where chainrule is slower than a peer (ratio < 1)", ""] + (slower or ["- nowhere"])


def render_markdown(results: dict) -> str:
    grid = _Grid(results)
    sections = [_header(results), _agreement(results), _training(results, grid), _roofline(results, grid),
                _inference(results, grid), _estimators(results, grid), _determinism(results), _slower(results)]
    return "\n".join(line for section in sections for line in section) + "\n"


# -- chart ------------------------------------------------------------------------------------------


def write_chart(results: dict, path: Path) -> str:
    """A bar chart of chainrule's training speed over each peer's (log scale); needs matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    options = results["options"]
    groups = [(w, t) for w in options["workloads"] for t in options["threads"]]
    figure, axes = plt.subplots(len(options["dtypes"]), 1, figsize=(11, 3.6 * len(options["dtypes"])), squeeze=False)
    width = 0.8 / len(PEERS)
    for axis, dtype in zip(axes[:, 0], options["dtypes"]):
        for index, peer in enumerate(PEERS):
            found = {(r["workload"], r["threads"]): r["training"] for r in results["ratios"]
                     if r["peer"] == peer and r["dtype"] == dtype}
            xs = [x for x, group in enumerate(groups) if group in found]
            bars = axis.bar([x + (index - (len(PEERS) - 1) / 2) * width for x in xs],
                            [found[groups[x]] for x in xs], width, label=peer)
            axis.bar_label(bars, labels=[f"{found[groups[x]]:.2g}" if found[groups[x]] < 100
                                         else f"{found[groups[x]]:.0f}" for x in xs], fontsize=7)
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_yscale("log")
        axis.set_xticks(range(len(groups)), [f"{w}\n{t} thread{'s' if t > 1 else ''}" for w, t in groups])
        axis.set_ylabel("chainrule / peer")
        axis.set_title(f"Training samples/s, chainrule over each peer, {dtype} (above 1: chainrule faster)")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"chart: {path}"
