"""The examples in the public docstrings run, against the installed package, and say what they print.

Each module of the public API is one test: its docstrings' examples run with
the standard library's doctest, ``np`` and ``cr`` (``import numpy as np``,
``import chainrule as cr``, as the API reference says) in their namespace. A
module whose examples all passed but that holds none fails too: the examples
must run, not be collected as nothing. A second test requires every public
function, class and method to carry an Examples section, so a new public name
cannot go undocumented.
"""

import doctest
import importlib
import inspect

import numpy as np
import pytest

import chainrule

# module -> the optional package it needs (its examples skip without it, as its tests do)
MODULES = {
    "chainrule": None,
    "chainrule.network": None,
    "chainrule.optim": None,
    "chainrule.sklearn": "sklearn",
    "chainrule.onnx": "onnx",
    "chainrule.distributed": "mpi4py",  # its fit examples need mpiexec: skipped; shard's run
    "chainrule.bench.run": None,
}


# Public objects defined in another (private) module, documented where they are
# exported: the exceptions, which the compiled chainrule._core defines.
ELSEWHERE = {"chainrule": ["DivergenceError", "ModelFormatError", "BusyError"]}


def _import(name):
    needs = MODULES[name]
    if needs is not None:
        pytest.importorskip(needs)
    if name == "chainrule.onnx":
        pytest.importorskip("onnxruntime")  # the examples run the models they export
    return importlib.import_module(name)


@pytest.mark.parametrize("name", list(MODULES))
def test_docstring_examples_pass(name):
    module = _import(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {"np": np, "cr": chainrule}
    examples = 0
    tests = finder.find(module, name, globs=dict(vars(module), **globs))
    for attr in ELSEWHERE.get(name, []):
        tests += finder.find(getattr(module, attr), f"{name}.{attr}", module=False, globs=dict(globs))
    for test in tests:
        if test.examples:
            examples += len(test.examples)
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
    assert examples > 0, f"{name}: no docstring example ran"


def _public_objects():
    """(qualified name, object) of every public function, class and method."""
    pytest.importorskip("sklearn")
    pytest.importorskip("onnx")
    import chainrule.bench.run
    import chainrule.onnx
    import chainrule.optim
    import chainrule.sklearn

    found = []
    for module in (chainrule, chainrule.optim, chainrule.sklearn, chainrule.onnx):
        for attr in module.__all__:
            value = getattr(module, attr)
            if inspect.ismodule(value) or not (inspect.isclass(value) or callable(value)):
                continue  # submodules have their own entry; data (ACTIVATIONS, ...) is documented on its page
            qualified = f"{module.__name__}.{attr}"
            found.append((qualified, value))
            if inspect.isclass(value) and not issubclass(value, BaseException):
                for member, function in vars(value).items():
                    if not member.startswith("_") and inspect.isfunction(inspect.unwrap(
                            function.__func__ if isinstance(function, classmethod) else function)):
                        found.append((f"{qualified}.{member}", function))
    found.append(("chainrule.bench.run.main", chainrule.bench.run.main))
    return found


def test_every_public_callable_has_an_example():
    missing = [name for name, value in _public_objects()
               if ">>> " not in (inspect.getdoc(value.__func__ if isinstance(value, classmethod) else value) or "")]
    assert not missing, f"no Examples section (>>> lines) in the docstrings of: {missing}"
