"""`python -m chainrule.bench` runs from the installed package and reports in JSON.

One short run (two small workloads, float64, one thread, short timings) of the
whole suite in a child process, from a directory outside any checkout: the
agreement check must pass for every installed implementation, and the JSON on
stdout must hold what bench/README.md describes.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import chainrule

WORKLOADS = ["W1", "W2"]
# What each implementation's distribution is imported as; absent ones must be reported, not measured.
PEERS = {"torch": "torch", "sklearn": "sklearn"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("bench")
    # The child runs the chainrule this test imported (the installed one, in CI and in tools/build_wheels.sh).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(chainrule.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "chainrule.bench", "--quick", "--workloads", *WORKLOADS,
               "--dtypes", "float64", "--seconds", "0.05", "--json", "-"]
    child = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    assert "Agreement" in child.stderr  # the progress goes to stderr, stdout is the JSON alone
    return json.loads(child.stdout)


def test_the_options_are_recorded(results):
    assert results["options"]["quick"] is True
    assert results["options"]["workloads"] == WORKLOADS
    assert results["options"]["threads"] == [1]
    assert results["options"]["dtypes"] == ["float64"]
    assert results["command"].startswith("python -m chainrule.bench --quick")
    assert results["versions"]["chainrule"] and results["versions"]["numpy"]


def test_the_agreement_check_passed_for_every_installed_implementation(results):
    agreement = results["agreement"]
    expected = {"chainrule", "numpy"} | {impl for impl, module in PEERS.items() if importlib.util.find_spec(module)}
    assert set(agreement) == expected
    for impl, verdicts in agreement.items():
        assert set(verdicts) == set(WORKLOADS)
        for workload, verdict in verdicts.items():
            assert verdict["agrees"] is True, f"{impl} on {workload}: {verdict}"
            for kind in ("cost", "params", "predict"):
                assert 0 <= verdict[kind] <= results["tolerance"], (impl, workload, kind, verdict[kind])


def test_every_implementation_is_timed_or_reported_missing(results):
    rows = {(row["impl"], row["workload"]): row for row in results["training"]}
    assert len(rows) == len(results["training"])  # one thread count, one dtype: one row each
    for impl in ("chainrule", "numpy", *PEERS):
        installed = impl in results["agreement"]
        for workload in WORKLOADS:
            row = rows[(impl, workload)]
            assert (row["threads"], row["dtype"]) == (1, "float64")
            if not installed:
                assert row["status"] == "not installed"
                continue
            assert row["status"] == "ok", row
            assert row["samples_per_s"] > 0 and row["gflops"] > 0
    chainrule_w2 = rows[("chainrule", "W2")]
    assert chainrule_w2["predict_records_per_s"] > 0 and chainrule_w2["latency_us"] > 0
    peers = {ratio["peer"] for ratio in results["ratios"]}
    assert peers == {impl for impl in results["agreement"] if impl != "chainrule"}
    assert all(ratio["training"] > 0 for ratio in results["ratios"])


def test_the_ceiling_and_the_determinism_runs_are_reported(results):
    assert results["ceiling_gflops"]["1"]["float64"] > 0
    assert results["bandwidth_gbs"]["1"] > 0


def test_the_openblas_kernel_sets_are_reported(results):
    # The ceiling, and so every percentage of it, depends on the kernel set each OpenBLAS runs. The child
    # inherits this process's environment, so its OpenBLAS copies pick the sets that this process's do.
    from chainrule.bench.peers import openblas_cores
    here = openblas_cores()
    assert results["openblas_cores"] == sorted(f"{library} {core or 'not read'}" for library, core in here.items())
    numpy_libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    if any("openblas" in name for name in (os.listdir(numpy_libs) if os.path.isdir(numpy_libs) else [])):
        assert here["numpy"], "NumPy's wheel carries OpenBLAS, but its kernel set was not read"
    assert results["machine"]["openblas_environment"] == {name: value for name, value in os.environ.items()
                                                          if name.startswith("OPENBLAS_") and name != "OPENBLAS_NUM_THREADS"}


def test_the_roofline_puts_each_timed_step_against_both_roofs(results):
    from chainrule.bench.report import render_markdown
    from chainrule.bench.workloads import BY_NAME

    markdown = render_markdown(results)
    section = markdown[markdown.index("## Roofline"):].split("\n## ")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| W")]
    assert [(row[0], row[1], row[2]) for row in rows] == [("| W1", "float64", "1"), ("| W2", "float64", "1")]
    for row in rows:
        spec = BY_NAME[row[0][2:]]
        assert row[3] == f"{spec.flops_per_record() * spec.batch_size:,}"
        assert row[4] == f"{8 * (spec.batch_size * (spec.layer_sizes[0] + spec.layer_sizes[-1]) + 2 * spec.num_params):,}"
        assert row[7] in ("compute", "memory")
        # the last column is the bound over the measured step, both from this run; a step may beat a
        # roof (its parameters stay in cache, or a shared machine slowed the roof's own measurement),
        # so the check is the arithmetic, not a ceiling of 100%
        training = next(r for r in results["training"] if (r["impl"], r["workload"]) == ("chainrule", spec.name))
        ceiling = results["ceiling_gflops"]["1"]["float64"] * 1e9
        bound = max(spec.flops_per_record() * spec.batch_size / ceiling,
                    8 * (spec.batch_size * (spec.layer_sizes[0] + spec.layer_sizes[-1]) + 2 * spec.num_params)
                    / (results["bandwidth_gbs"]["1"] * 1e9))
        percent = 100 * bound * training["samples_per_s"] / spec.batch_size
        assert row[9].rstrip(" |") == (f"{percent:.0f}%" if percent >= 10 else f"{percent:.2g}%")
        assert row[7] == ("compute" if bound == spec.flops_per_record() * spec.batch_size / ceiling else "memory")
    runs = results["determinism"]["runs"]
    assert [(run["workload"], run["dtype"], run["threads"]) for run in runs] == [("W2", "float64", 1)]
    assert runs[0]["bitwise_identical"] is True


def test_predict_is_timed_and_reported_on_the_predict_workloads_of_the_run(results):
    from chainrule.bench.measure import INFERENCE_RECORDS
    from chainrule.bench.report import render_markdown

    timed = {row["workload"] for row in results["training"]
             if row["impl"] == "chainrule" and "predict_records_per_s" in row}
    assert timed == {"W2"}  # W1 is not a predict workload; W3 and W4 are not in this run
    markdown = render_markdown(results)
    section = markdown[markdown.index("## Predict throughput"):].split("\n## ")[0]
    assert section.splitlines()[0] == (f"## Predict throughput (records/s; W2: {INFERENCE_RECORDS['W2']} records "
                                       "per call) and chainrule's ratio")
    assert {line.split(" | ")[0] for line in section.splitlines() if line.startswith("| W")} == {"| W2"}
