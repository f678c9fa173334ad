"""W6 in `python -m chainrule.bench`: scikit-learn's default MLPRegressor, through both libraries' estimators.

One quick run of the suite on W6 alone (float64, one thread, short timings)
in a child process, from a directory outside any checkout: chainrule's
estimator must take scikit-learn's steps, both must be timed per epoch with
their share of the GEMM ceiling, the implementations without an estimator
must be reported as such, and the Python layer's measurement must compare
two fits that ended on the same parameters. The speed targets are checked
by the full run, reported in docs/performance.md, not here.
"""

import json
import os
import subprocess
import sys

import pytest

import chainrule
from chainrule.bench.report import render_markdown
from chainrule.bench.workloads import BY_NAME


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("bench_w6")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(chainrule.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "chainrule.bench", "--quick", "--workloads", "W6", "--dtypes", "float64",
               "--seconds", "0.05", "--json", "-"]
    child = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout)


def test_w6_is_scikit_learns_default_mlp_and_its_flops_are_counted_by_layer():
    workload = BY_NAME["W6"]
    assert workload.estimator and workload.layer_sizes == (50, 100, 1) and workload.batch_size == 200
    # forward and weight gradient of 50 -> 100 (no input gradient for X), and forward, weight gradient
    # and the hidden layer's input gradient of 100 -> 1: 2 FLOP per multiply-add.
    assert workload.flops_per_record() == 2 * (2 * 50 * 100 + 3 * 100 * 1) == 20_600


def test_chainrules_estimator_takes_scikit_learns_steps(results):
    agreement = results["agreement"]
    verdict = agreement["chainrule"]["W6"]
    assert verdict["agrees"] is True, verdict
    for kind in ("cost", "params", "predict"):
        assert 0 <= verdict[kind] <= results["tolerance"], (kind, verdict[kind])
    assert agreement["sklearn"]["W6"]["agrees"] is True  # the reference, against itself
    for impl in ("numpy", "torch"):
        if impl in agreement:
            assert agreement[impl]["W6"] == {"agrees": False, "status": "not applicable",
                                             "error": agreement[impl]["W6"]["error"]}


def test_both_estimators_are_timed_per_epoch_against_the_ceiling(results):
    rows = {row["impl"]: row for row in results["training"] if row["workload"] == "W6"}
    assert set(rows) == {"chainrule", "numpy", "torch", "sklearn"}
    for impl in ("numpy", "torch"):
        assert rows[impl]["status"] in ("not applicable", "not installed")
    ceiling = results["ceiling_gflops"]["1"]["float64"]
    for impl in ("chainrule", "sklearn"):
        row = rows[impl]
        assert row["status"] == "ok", row
        assert (row["threads"], row["dtype"], row["records"]) == (1, "float64", 15000)
        assert row["epochs"] >= 2 and row["seconds_per_epoch"] > 0
        assert row["samples_per_s"] == pytest.approx(row["records"] / row["seconds_per_epoch"])
        assert row["gflops"] == pytest.approx(row["samples_per_s"] * 20_600 / 1e9)
        assert row["pct_ceiling"] == pytest.approx(100 * row["gflops"] / ceiling)
    [ratio] = [r for r in results["ratios"] if r["workload"] == "W6"]
    assert ratio["peer"] == "sklearn"
    assert ratio["training"] == pytest.approx(rows["sklearn"]["seconds_per_epoch"] / rows["chainrule"]["seconds_per_epoch"])


def test_the_python_layer_is_measured_against_the_same_steps_in_the_core(results):
    [row] = [r for r in results["training"] if (r["impl"], r["workload"]) == ("chainrule", "W6")]
    layer = row["python_layer"]
    assert layer["epochs"] == 10  # --quick; 200 in a full run
    assert layer["estimator_seconds"] > 0 and layer["core_seconds"] > 0
    assert layer["overhead_pct"] == pytest.approx(100 * (layer["estimator_seconds"] / layer["core_seconds"] - 1))
    assert layer["max_abs_param_diff"] == 0.0  # the same steps, to the bit


def test_the_report_has_a_w6_line(results):
    markdown = render_markdown(results)
    section = markdown.split("## Through the scikit-learn estimators")[1].split("\n## ")[0]
    [line] = [line for line in section.splitlines() if line.startswith("| W6 | float64 | 1 |")]
    assert "x" in line and "% (10 epochs" in line
