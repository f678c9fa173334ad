"""A deterministic fuzz corpus for the model-file loader (docs/model-file.md).

tests/files/test_model_file.py checks the format, every truncation, every single bit
flip, random byte replacements, trailing bytes, foreign files, one version
field and a list of lying headers one at a time. This corpus adds what those
leave out:

* inserted and deleted bytes at every position (the file shifts under the
  header fields);
* structure-aware mutations: every header field set to boundary values with
  the CRC recomputed, so that the checks behind the CRC are reached;
* random files, and random bodies behind a valid prefix;
* a few hundred headers lying about sizes with a correct CRC (huge layer
  sizes, huge parameter counts, zero layers, counts that wrap modulo 2**64),
  all loaded by one child process whose peak RSS must stay small and which
  must finish in bounded time;
* files that are not regular files (a FIFO, a character device), which must be
  refused promptly rather than block;
* files of another format version with another layout or another checksum,
  whose error must say which version the file is and which one is read.

Every load must end in chainrule.ModelFormatError (OSError for what the
operating system refuses), or, for a structure-aware mutation, in a network
that is exactly what the mutated header describes. Everything is seeded.

The coverage-guided fuzzer for the same loader is cpp/fuzz/fuzz_model_file.cpp
(libFuzzer; see its header comment for the build and run commands).
"""

import json
import os
import pathlib
import re
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib

import numpy as np
import pytest

import chainrule as cr

MAGIC = b"CHAINRUL"
HEADER_FIXED = 24  # magic, version, bytes per parameter, loss, L
ACTIVATION_NAMES = list(cr.ACTIVATIONS)  # index = the code a model file stores
LOSS_NAMES = list(cr.LOSSES)
U32_BOUNDARIES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
U64_BOUNDARIES = [0, 1, 2, 3, 2**16, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**53, 2**62, 2**63 - 1, 2**63,
                  2**64 - 2, 2**64 - 1]
# Seconds any single load may take: the files here are at most a few KiB.
LOAD_SECONDS = 2.0


@pytest.fixture
def scratch(tmp_path):
    """A directory for thousands of small writes: on tmpfs where there is one (a disk's
    flush-on-replace makes each rewrite of a file cost milliseconds), else tmp_path."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="chainrule-fuzz-") as directory:
            yield pathlib.Path(directory)
    else:
        yield tmp_path


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def header(*, version=1, scalar_bytes=8, loss=1, sizes=(2, 3, 1), activations=(2, 1), num_params=None,
           num_layers=None):
    """The documented header; every field can lie."""
    sizes, activations = list(sizes), list(activations)
    if num_layers is None:
        num_layers = len(sizes) - 1
    if num_params is None:
        num_params = sum(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1)) % 2**64
    return (MAGIC + struct.pack("<4I", version, scalar_bytes, loss, num_layers)
            + struct.pack(f"<{len(sizes)}Q", *sizes) + struct.pack(f"<{len(activations)}I", *activations)
            + struct.pack("<Q", num_params))


def header_fields(data: bytes):
    """[(name, offset, width)] of every header field of a valid file."""
    num_layers = struct.unpack_from("<I", data, 20)[0]
    fields = [("version", 8, 4), ("scalar_bytes", 12, 4), ("loss", 16, 4), ("num_layers", 20, 4)]
    offset = HEADER_FIXED
    for i in range(num_layers + 1):
        fields.append((f"size[{i}]", offset, 8))
        offset += 8
    for i in range(num_layers):
        fields.append((f"activation[{i}]", offset, 4))
        offset += 4
    fields.append(("num_params", offset, 8))
    return fields, offset + 8


def describe(data: bytes):
    """What a file claims, parsed here from the documented layout (None where it cannot be)."""
    try:
        version, scalar_bytes, loss, num_layers = struct.unpack_from("<4I", data, 8)
        sizes = list(struct.unpack_from(f"<{num_layers + 1}Q", data, HEADER_FIXED))
        offset = HEADER_FIXED + 8 * (num_layers + 1)
        activations = list(struct.unpack_from(f"<{num_layers}I", data, offset))
        (num_params,) = struct.unpack_from("<Q", data, offset + 4 * num_layers)
    except struct.error:
        return None
    return {"version": version, "scalar_bytes": scalar_bytes, "loss": loss, "sizes": sizes,
            "activations": activations, "num_params": num_params, "params_offset": offset + 4 * num_layers + 8}


def load_outcome(path):
    """('loaded', net) | ('refused', exception) | ('other', exception), and the seconds it took."""
    start = time.perf_counter()
    try:
        net = cr.Network.load(path)
        outcome = ("loaded", net)
    except (cr.ModelFormatError, OSError) as error:
        outcome = ("refused", error)
    except Exception as error:  # noqa: BLE001 - anything else is a finding
        outcome = ("other", error)
    return outcome, time.perf_counter() - start


def valid_models(tmp_path):
    """{name: bytes} of saved models: several architectures, both dtypes, nonzero parameters."""
    models = {}
    specs = {
        "logistic": ([3, 1], [], "sigmoid", "bce"),
        "tanh-sigmoid-bce": ([2, 3, 1], ["tanh"], "sigmoid", "bce"),
        "deep-mse": ([4, 3, 3, 2], ["relu", "identity"], "tanh", "mse"),
    }
    for name, (sizes, hidden, output, loss) in specs.items():
        for dtype in ("float32", "float64"):
            net = cr.Network(sizes, activation=hidden, output=output, loss=loss, dtype=dtype, seed=len(name))
            for b in net.biases:
                b[...] = np.linspace(-1, 1, b.size)
            path = tmp_path / f"{name}-{dtype}.crnn"
            net.save(path)
            models[f"{name}-{dtype}"] = path.read_bytes()
    return models


def check_all(tmp_path, files, allow_load=None):
    """Loads every (label, bytes); returns {label: problem} for each that is not refused cleanly."""
    path = tmp_path / "case.crnn"
    problems = {}
    for label, data in files:
        path.write_bytes(data)
        (kind, value), seconds = load_outcome(path)
        if seconds > LOAD_SECONDS:
            problems[label] = f"took {seconds:.1f} s"
        elif kind == "other":
            problems[label] = f"{type(value).__name__}: {value}"
        elif kind == "loaded":
            verdict = allow_load(data, value) if allow_load else "loaded a damaged file"
            if verdict:
                problems[label] = verdict
        elif isinstance(value, OSError) and not isinstance(value, cr.ModelFormatError):
            problems[label] = f"OSError for a readable regular file: {value}"
        elif not str(value).strip():
            problems[label] = "an empty message"
    return problems


# -- shifted files: inserted and deleted bytes ---------------------------------------------


@pytest.mark.parametrize("model", ["tanh-sigmoid-bce-float64", "deep-mse-float32"])
def test_inserted_bytes_are_refused(scratch, model):
    data = valid_models(scratch)[model]
    rng = np.random.default_rng(11)
    files = []
    for position in range(len(data) + 1):
        for inserted in (b"\x00", b"\xff", bytes([int(rng.integers(256))]), rng.bytes(8)):
            files.append(((position, inserted.hex()), data[:position] + inserted + data[position:]))
    problems = check_all(scratch, files)
    some = dict(list(problems.items())[:10])
    assert problems == {}, f"{len(problems)} of {len(files)} insertions not refused: {some}"


@pytest.mark.parametrize("model", ["tanh-sigmoid-bce-float64", "deep-mse-float32"])
def test_deleted_bytes_are_refused(scratch, model):
    data = valid_models(scratch)[model]
    files = [((position, width), data[:position] + data[position + width:])
             for width in (1, 3, 4, 8) for position in range(len(data) - width + 1)]
    problems = check_all(scratch, files)
    assert problems == {}, f"{len(problems)} of {len(files)} deletions not refused: {dict(list(problems.items())[:10])}"


def test_duplicated_and_swapped_header_fields_are_refused(scratch):
    data = valid_models(scratch)["deep-mse-float64"]
    fields, end = header_fields(data)
    files = []
    for name, offset, width in fields:
        field = data[offset:offset + width]
        files.append((("duplicated", name), data[:offset] + field + data[offset:]))
    for (name_a, off_a, w_a), (name_b, off_b, w_b) in zip(fields, fields[1:]):
        swapped = data[:off_a] + data[off_b:off_b + w_b] + data[off_a:off_a + w_a] + data[off_b + w_b:]
        if swapped != data:  # the CRC is left as it was: every such file is damaged
            files.append((("swapped", name_a, name_b), swapped))
    problems = check_all(scratch, files)
    assert problems == {}, problems


# -- structure-aware mutations: the CRC is right, a field is not --------------------------------


def consistent_with_header(data, net):
    """'' when `net` is exactly what the file describes, else what differs."""
    claimed = describe(data)
    if claimed is None:
        return "loaded a file whose header cannot even be parsed"
    expected = {
        "dtype": {4: "float32", 8: "float64"}.get(claimed["scalar_bytes"]),
        "loss": LOSS_NAMES[claimed["loss"]] if claimed["loss"] < len(LOSS_NAMES) else None,
        "layer_sizes": tuple(claimed["sizes"]),
        "activations": tuple(ACTIVATION_NAMES[a] if a < len(ACTIVATION_NAMES) else None
                             for a in claimed["activations"]),
        "n_params": claimed["num_params"],
    }
    actual = {"dtype": net.dtype.name, "loss": net.loss, "layer_sizes": net.layer_sizes,
              "activations": net.activations, "n_params": net.n_params}
    if expected != actual:
        return f"loaded {actual}, but the header says {expected}"
    if claimed["version"] != 1:
        return f"loaded a version {claimed['version']} file"
    little = np.dtype(expected["dtype"]).newbyteorder("<")
    stored = np.frombuffer(data, dtype=little, count=net.n_params, offset=claimed["params_offset"])
    loaded = np.concatenate([a.ravel() for pair in zip(net.weights, net.biases) for a in pair])
    if stored.tobytes() != loaded.astype(little).tobytes():
        return "loaded parameters that differ from the file's"
    return ""


@pytest.mark.parametrize("model", ["logistic-float32", "tanh-sigmoid-bce-float64", "deep-mse-float64"])
def test_every_header_field_at_every_boundary_with_a_correct_crc(scratch, model):
    data = valid_models(scratch)[model]
    fields, end = header_fields(data)
    body = data[:-4]
    files = []
    for name, offset, width in fields:
        original = int.from_bytes(body[offset:offset + width], "little")
        limit = 2 ** (8 * width)
        values = set(U32_BOUNDARIES if width == 4 else U64_BOUNDARIES)
        values |= {(original + d) % limit for d in (-1, 1, 2, 2**31, 2**32)}
        for value in sorted(values - {original}):
            mutated = body[:offset] + value.to_bytes(width, "little") + body[offset + width:]
            files.append(((name, value), with_crc(mutated)))
    problems = check_all(scratch, files, allow_load=consistent_with_header)
    assert problems == {}, f"{len(problems)} of {len(files)}: {dict(list(problems.items())[:10])}"
    # The version field is first in line: any other version says so.
    for (name, value), mutated in files:
        if name == "version":
            path = scratch / "version.crnn"
            path.write_bytes(mutated)
            (kind, error), _ = load_outcome(path)
            assert kind == "refused" and re.search(rf"(?<!\d){value}(?!\d)", str(error)), (value, error)


def test_random_parameter_bytes_behind_a_valid_header_load_exactly(scratch):
    # With the CRC right, any parameter bits are a valid file: the loader must
    # hand them over bit for bit (NaN payloads included), neither more nor less.
    rng = np.random.default_rng(12)
    files = []
    for trial in range(50):
        sizes = [int(n) for n in rng.integers(1, 6, size=int(rng.integers(2, 5)))]
        scalar_bytes = int(rng.choice([4, 8]))
        loss = int(rng.integers(2))
        activations = [int(a) for a in rng.integers(4, size=len(sizes) - 1)]
        if loss == 0:
            activations[-1] = 0
        head = header(scalar_bytes=scalar_bytes, loss=loss, sizes=sizes, activations=activations)
        num_params = sum(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1))
        files.append((trial, with_crc(head + rng.bytes(num_params * scalar_bytes))))
    path = scratch / "random-parameters.crnn"
    problems = {}
    for trial, data in files:
        path.write_bytes(data)
        (kind, value), _ = load_outcome(path)
        problems[trial] = consistent_with_header(data, value) if kind == "loaded" else f"{kind}: {value}"
    assert {t: p for t, p in problems.items() if p} == {}


# -- random files ---------------------------------------------------------------------------


def test_random_files_are_refused(scratch):
    rng = np.random.default_rng(13)
    files = [(("random", n), rng.bytes(n)) for n in list(range(0, 80)) + [255, 1024, 4096, 65536]]
    files += [(("magic+random", n), MAGIC + rng.bytes(n)) for n in range(0, 120, 3)]
    files += [(("magic+v1+random", n), MAGIC + struct.pack("<I", 1) + rng.bytes(n)) for n in range(0, 200, 5)]
    files += [(("magic+v1+random+crc", n), with_crc(MAGIC + struct.pack("<I", 1) + rng.bytes(n)))
              for n in range(0, 200, 5)]
    files += [(("zeros", n), bytes(n)) for n in (1, 8, 24, 100, 4096)]
    files += [(("ones", n), b"\xff" * n) for n in (1, 8, 24, 100, 4096)]
    # Files that start like a model but have random sizes, counts and codes.
    for trial in range(200):
        head = MAGIC + struct.pack("<4I", 1, int(rng.choice([4, 8])), int(rng.integers(2)),
                                   int(rng.choice([1, 2, 3, 2**31, 2**32 - 1])))
        files.append((("random-header", trial), with_crc(head + rng.bytes(int(rng.integers(0, 300))))))

    def impossible(data, net):
        return consistent_with_header(data, net) or ""

    problems = check_all(scratch, files, allow_load=impossible)
    assert problems == {}, f"{len(problems)} of {len(files)}: {dict(list(problems.items())[:10])}"


# -- lying headers: no huge allocation, bounded time, in a child process ---------------------------


def lying_files():
    """[(label, bytes)]: headers with correct CRCs that claim far more than the file holds."""
    files = []
    big_sizes = [1, 2, 3, 2**16, 2**20, 2**31, 2**32 - 1, 2**32, 2**33, 2**63, 2**64 - 1]
    bodies = [b"", bytes(64), bytes(4096)]
    for a in big_sizes:
        for b in big_sizes:
            if a < 2**16 and b < 2**16:
                continue
            for scalar_bytes in (4, 8):
                for body in bodies:
                    files.append(((a, b, scalar_bytes, len(body)),
                                  with_crc(header(scalar_bytes=scalar_bytes, sizes=(a, b), activations=(1,))
                                           + body)))
    # Parameter counts that lie, for an honest small architecture.
    for count in U64_BOUNDARIES:
        if count != 13:
            files.append((("count", count), with_crc(header(num_params=count) + bytes(13 * 8))))
    # Layer counts that lie, with room for only one layer's fields.
    for num_layers in [0, 2, 3, 1000, 2**16, 2**31, 2**32 - 1]:
        files.append((("layers", num_layers),
                      with_crc(header(num_layers=num_layers, sizes=(2, 1), activations=(1,)) + bytes(3 * 8))))
    # Sums of parameter counts that wrap modulo 2**64 to what the body holds:
    # (2**32-1)(2**32-1+1) + 1*(2**32-1+1) = 2**64 -> 0, plus 3 * (1 + 1) = 6.
    wrap = (2**32 - 1, 2**32 - 1, 1, 3)
    files.append((("wrap-to-6", wrap), with_crc(header(sizes=wrap, activations=(1, 1, 1), num_params=6) + bytes(48))))
    files.append((("wrap-to-0", wrap[:3]), with_crc(header(sizes=wrap[:3], activations=(1, 1), num_params=0))))
    # Many honest-looking layers of huge width.
    for width in (2**20, 2**31, 2**32 - 1):
        sizes = [width] * 9
        files.append((("deep-wide", width), with_crc(header(sizes=sizes, activations=[2] * 8) + bytes(256))))
    return files


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import chainrule as cr
    directory, count, valid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cr.Network.load(valid).predict  # warm up: every code path of a load has run once
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes, slowest = {}, 0.0
    for i in range(count):
        start = time.perf_counter()
        try:
            cr.Network.load(f"{directory}/{i}.crnn")
            outcome = "loaded"
        except cr.ModelFormatError:
            outcome = "ModelFormatError"
        except BaseException as error:
            outcome = f"{type(error).__name__}: {error}"
        slowest = max(slowest, time.perf_counter() - start)
        outcomes[i] = outcome
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcomes": outcomes, "growth_kib": peak - base, "slowest": slowest}))
""")


def test_lying_headers_are_refused_in_bounded_time_and_memory(scratch):
    files = lying_files()
    for i, (_, data) in enumerate(files):
        (scratch / f"{i}.crnn").write_bytes(data)
    valid = scratch / "valid.crnn"
    cr.Network([4, 3, 2], seed=0).save(valid)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD, str(scratch), str(len(files)), str(valid)],
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    wrong = {files[int(i)][0]: o for i, o in report["outcomes"].items() if o != "ModelFormatError"}
    assert wrong == {}, f"{len(wrong)} of {len(files)} lying files not refused: {dict(list(wrong.items())[:10])}"
    assert report["growth_kib"] < 200 * 1024, f"peak RSS grew by {report['growth_kib'] / 1024:.0f} MiB"
    assert report["slowest"] < LOAD_SECONDS, f"one load took {report['slowest']:.2f} s"
    assert elapsed < 60


# -- files that are not regular files -----------------------------------------------------------

BLOCKING_LOAD = textwrap.dedent("""
    import sys
    import chainrule as cr
    try:
        cr.Network.load(sys.argv[1])
        print("loaded")
    except (cr.ModelFormatError, OSError) as error:
        print("refused:", type(error).__name__, error)
""")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_load_of_a_fifo_is_refused_promptly(scratch):
    # Opening a FIFO for reading blocks until a writer appears, which here is
    # never: a loader that opens whatever it is given hangs (with the GIL held,
    # freezing every thread). A model file is a regular file; anything else
    # should be refused before it is opened.
    fifo = scratch / "model.crnn"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    child = subprocess.Popen([sys.executable, "-c", BLOCKING_LOAD, str(fifo)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        # A refusal takes the child's start and imports; 30 s leaves room for
        # a loaded machine (CI runs two suites side by side) and still ends a hang.
        out, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail("Network.load of a FIFO blocked for 30 s instead of refusing it")
    assert out.startswith("refused:"), (out, err)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_load_of_a_character_device_is_refused(scratch):
    # /dev/zero never ends: a loader that reads it without checking the file
    # type would allocate or loop forever. It is only read, never written.
    child = subprocess.run([sys.executable, "-c", BLOCKING_LOAD, "/dev/zero"], capture_output=True, text=True,
                           timeout=30)
    assert child.stdout.startswith("refused:"), (child.stdout, child.stderr)


def test_load_of_a_symlink_loop_is_refused(scratch):
    loop = scratch / "loop.crnn"
    os.symlink(loop, loop)
    (kind, error), _ = load_outcome(loop)
    assert kind == "refused" and isinstance(error, OSError), error


# -- other format versions --------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 3, 100])
@pytest.mark.parametrize("variant", ["other-layout", "other-checksum", "float32", "header-only"])
def test_other_versions_say_which_version_they_are(scratch, version, variant):
    # A future (or past) version may lay out everything after the version field
    # differently, and may checksum differently: the version must still be the
    # first thing reported, not "truncated" or "corrupted".
    rng = np.random.default_rng(version)
    net = cr.Network([3, 4, 1], dtype="float32" if variant == "float32" else "float64", seed=1)
    path = scratch / "model.crnn"
    net.save(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, version)
    if variant == "other-layout":
        data = data[:12] + rng.bytes(40) + data[12:]  # e.g. new header fields
        data = with_crc(bytes(data[:-4]))
    elif variant == "other-checksum":
        data[-4:] = rng.bytes(4)
    elif variant == "header-only":
        data = data[:12]
    else:
        data = with_crc(bytes(data[:-4]))
    path.write_bytes(bytes(data))
    (kind, error), _ = load_outcome(path)
    assert kind == "refused" and isinstance(error, cr.ModelFormatError), error
    message = str(error)
    assert re.search(rf"version\D*(?<!\d){version}(?!\d)", message), f"does not say it is version {version}: {message}"
    supported = re.sub(rf"(?<!\d){version}(?!\d)", "", message)
    assert re.search(r"(?<!\d)1(?!\d)", supported), f"does not say version 1 is read: {message}"
