"""mypy --strict passes on the examples and on tests/typing/test_typed_api.py, against the installed package.

The installed package is what a user's type checker sees: its annotations,
its py.typed marker and the stub of the compiled module, chainrule/_core.pyi.
mypy runs in a temporary directory, so no source tree is on its path, with
the settings of mypy.ini beside this file (scikit-learn ships no types).
mypy.stubtest then compares that stub with the compiled module itself: a
class, function or attribute missing from either side fails.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHECKED = [ROOT / "python" / "examples", HERE / "test_typed_api.py"]


def _run(arguments, cwd):
    return subprocess.run([sys.executable, "-m", *arguments], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_mypy_strict_on_the_examples_and_the_typed_api_test(tmp_path):
    assert all(path.exists() for path in CHECKED), CHECKED
    result = _run(["mypy", "--strict", "--config-file", str(HERE / "mypy.ini"), "--cache-dir", str(tmp_path / "cache"),
                   *map(str, CHECKED)], cwd=tmp_path)
    assert result.returncode == 0, f"mypy --strict failed:\n{result.stdout}{result.stderr}"
    assert "Success: no issues found in" in result.stdout, result.stdout


def test_the_stub_of_the_compiled_module_matches_it(tmp_path):
    result = _run(["mypy.stubtest", "chainrule._core", "--allowlist", str(HERE / "stubtest-allowlist.txt")],
                  cwd=tmp_path)
    assert result.returncode == 0, f"chainrule/_core.pyi does not match chainrule._core:\n{result.stdout}{result.stderr}"
