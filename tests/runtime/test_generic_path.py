"""The kernels the CPU dispatches to agree with the baseline ones, within rounding.

The core's kernels are compiled once per x86-64 level (AVX-512, AVX2 + FMA,
the baseline) and the copy for the CPU is chosen when the library loads
(GCC target_clones, cpp/src/runtime/macros.hpp). The resolver reads CPUID
itself (libgcc's __cpu_indicator_init, linked into _core): no environment
variable, GLIBC_TUNABLES included, changes its choice. So the baseline path is
forced by a build without the clones (CMake CHAINRULE_TARGET_CLONES=OFF), in
another Python environment: CHAINRULE_GENERIC_PYTHON names its interpreter
(tools/build_wheels.sh --generic builds it). Both train the same networks, in
a child process each, and every result must agree within rounding.

That the generic build holds no dispatch at all, and the default build does,
is read from the two _core libraries' dynamic symbol tables: a target_clones
function is exported as an indirect function (STT_GNU_IFUNC), its resolver
picking a copy at load time.
"""

import json
import os
import platform
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import chainrule as cr

GENERIC_PYTHON = os.environ.get("CHAINRULE_GENERIC_PYTHON")
pytestmark = pytest.mark.skipif(not GENERIC_PYTHON, reason="CHAINRULE_GENERIC_PYTHON (a Python with chainrule built "
                                "with CHAINRULE_TARGET_CLONES=OFF) not set; tools/build_wheels.sh --generic sets it")

# Every activation in the hidden and output layers, every loss, batch 1 (the
# fused one-record steps) and larger batches, both dtypes: each cloned kernel runs.
CASES = [
    {"sizes": [7, 9, 3], "activation": hidden, "output": output, "loss": loss, "batch": batch}
    for hidden in ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
    for output, loss in (("sigmoid", "bce"), ("identity", "mse"), ("softmax", "cce"))
    for batch in (1, 16)
] + [  # layers of the small-layer kernels (kernels/small_linear.cpp): the benchmark's W2 and W3, and two more
    {"sizes": sizes, "activation": hidden, "output": output, "loss": loss, "batch": 32}
    for sizes, hidden, output, loss in (([30, 16, 1], "sigmoid", "sigmoid", "bce"),
                                        ([10, 32, 1], "sigmoid", "identity", "mse"),
                                        ([9, 13, 20, 3], "tanh", "softmax", "cce"),
                                        ([24, 8, 3], "relu", "sigmoid", "bce"))
]

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import chainrule as cr
    cr.set_num_threads(1)
    cases, dtype, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    arrays = {"core": np.frombuffer(cr._core.__file__.encode(), dtype=np.uint8)}
    rng = np.random.default_rng(0)
    X_all = rng.standard_normal((64, 30)).astype(dtype)
    labels = rng.integers(0, 3, 64)
    targets = {"bce": (rng.random((64, 3)) < 0.5).astype(dtype), "cce": np.eye(3, dtype=dtype)[labels],
               "mse": rng.standard_normal((64, 3)).astype(dtype)}
    for number, case in enumerate(cases):
        if case["activation"] not in cr.ACTIVATIONS:
            continue
        net = cr.Network(case["sizes"], activation=case["activation"], output=case["output"], loss=case["loss"],
                         dtype=dtype, seed=number)
        X = np.ascontiguousarray(X_all[:, :case["sizes"][0]])
        Y = np.ascontiguousarray(targets[case["loss"]][:, :case["sizes"][-1]])
        history = net.fit(X, Y, epochs=3, lr=0.01, batch_size=case["batch"], shuffle=False)
        results = [np.asarray(history, dtype=np.float64), net.predict(X), np.float64(net.cost(X, Y))]
        results += [*net.weights, *net.biases, *[g for pair in net.gradients(X, Y) for g in pair]]
        for index, value in enumerate(results):
            arrays[f"{number}/{index}"] = np.asarray(value)
    np.savez(out, **arrays)
""")


def train(python, dtype, path):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    child = subprocess.run([python, "-c", CHILD, json.dumps(CASES), dtype, str(path)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def ifunc_symbols(path):
    """The names of the STT_GNU_IFUNC symbols in an ELF64 little-endian library's .dynsym."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path}: not an ELF64 little-endian file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != 11:  # SHT_DYNSYM
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, entsize):
            st_name, st_info = struct.unpack_from("<IB", data, at)
            if st_info & 0xF == 10:  # STT_GNU_IFUNC
                end = data.index(b"\0", strings + st_name)
                names.append(data[strings + st_name:end].decode())
    return names


def core_path(python):
    child = subprocess.run([python, "-c", "import chainrule; print(chainrule._core.__file__)"],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    return child.stdout.strip()


def test_the_generic_build_is_another_build():
    assert os.path.realpath(core_path(GENERIC_PYTHON)) != os.path.realpath(cr._core.__file__)


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
                    reason="target_clones dispatch is built on x86-64 Linux only")
def test_only_the_default_build_dispatches():
    generic = ifunc_symbols(core_path(GENERIC_PYTHON))
    default = ifunc_symbols(cr._core.__file__)
    assert generic == [], f"the generic build dispatches: {generic}"
    assert default, "the default build has no dispatched (IFUNC) kernel"


# Relative to the largest magnitude of each result. The clones may vectorize
# a sum in another order and, from AVX2 on, contract a*b+c into one rounding;
# after 3 epochs that is a few units in the last place, amplified mildly (on
# an AMD EPYC with AVX-512: at most 2.8e-6 in float32, 2.3e-15 in float64).
TOLERANCE = {"float32": 2e-5, "float64": 1e-12}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(set(line.split(":", 1)[1].split()) for line in cpuinfo if line.startswith("flags"))
    except (OSError, StopIteration):
        return set()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_dispatched_kernels_agree_with_the_generic_ones(dtype, tmp_path):
    default = train(sys.executable, dtype, tmp_path / "default.npz")
    generic = train(GENERIC_PYTHON, dtype, tmp_path / "generic.npz")
    assert default.pop("core").tobytes() != generic.pop("core").tobytes()
    assert default.keys() == generic.keys() and len(default) > len(CASES)
    worst, differing = 0.0, 0
    for key in default:
        a, b = default[key].astype(np.float64), generic[key].astype(np.float64)
        assert a.shape == b.shape, key
        assert np.isfinite(a).all() and np.isfinite(b).all(), key
        differing += not np.array_equal(a, b)
        scale = max(float(np.abs(b).max()), np.finfo(dtype).tiny)
        error = float(np.abs(a - b).max()) / scale
        worst = max(worst, error)
        assert error <= TOLERANCE[dtype], f"case/result {key}: relative difference {error:.3g}"
    print(f"{dtype}: {differing} of {len(default)} results differ in some bit; largest relative difference {worst:.3g}")
    if {"avx2", "fma"} <= cpu_flags() and platform.machine() == "x86_64":
        # Here the default build runs its x86-64-v3 or v4 copies, not the
        # baseline one: were the two runs bitwise equal, the comparison above
        # would not have compared two paths.
        assert differing, "the default build computed every bit as the generic one on an AVX2 CPU"
