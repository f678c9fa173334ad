"""The model file: the documented format (cpp/include/chainrule/model_file.hpp),
atomic saves, bitwise round trips, and loads that refuse every damaged,
foreign or lying file with chainrule.ModelFormatError, never a crash or a
huge allocation.

Files are built here with struct and zlib.crc32 from the documented layout:

    magic "CHAINRUL" | u32 version (1) | u32 bytes per parameter (4, 8) |
    u32 loss (0 bce, 1 mse) | u32 L | u64 n_0..n_L | u32 activation x L
    (0 sigmoid, 1 identity, 2 tanh, 3 relu) | u64 P | P parameters, layer by
    layer W_l row-major then b_l | u32 CRC-32 of every byte before it.
All little-endian.
"""

import os
import pathlib
import re
import resource
import stat
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import chainrule as cr

MAGIC = b"CHAINRUL"
VERSION = 1
LOSS_CODES = {"bce": 0, "mse": 1, "cce": 2}
ACTIVATION_CODES = {"sigmoid": 0, "identity": 1, "tanh": 2, "relu": 3, "softmax": 4}
DTYPES = ["float32", "float64"]

ARCHITECTURES = {
    "tanh-sigmoid-bce": ([2, 3, 1], "tanh", "sigmoid", "bce"),
    "mixed-identity-mse": ([4, 5, 3, 2], ["relu", "sigmoid"], "identity", "mse"),
    "no-hidden-relu-mse": ([3, 2], [], "relu", "mse"),
    "relu-softmax-cce": ([3, 4, 3], "relu", "softmax", "cce"),
}


# -- the documented format, written out independently -------------------------------


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def encode_header(*, version=VERSION, scalar_bytes, loss_code, layer_sizes, activation_codes, num_params=None):
    num_layers = len(layer_sizes) - 1
    if num_params is None:
        # Wrapped to 64 bits, as a writer with overflowing u64 arithmetic would store it.
        num_params = sum(layer_sizes[l + 1] * (layer_sizes[l] + 1) for l in range(num_layers)) % 2**64
    return (MAGIC + struct.pack("<4I", version, scalar_bytes, loss_code, num_layers)
            + struct.pack(f"<{len(layer_sizes)}Q", *layer_sizes)
            + struct.pack(f"<{len(activation_codes)}I", *activation_codes)
            + struct.pack("<Q", num_params))


def encode_network(net) -> bytes:
    """The bytes a save of `net` must produce, from the documented layout."""
    header = encode_header(scalar_bytes=net.dtype.itemsize, loss_code=LOSS_CODES[net.loss],
                           layer_sizes=list(net.layer_sizes),
                           activation_codes=[ACTIVATION_CODES[a] for a in net.activations])
    little = net.dtype.newbyteorder("<")
    params = b"".join(np.ascontiguousarray(a, dtype=little).tobytes()
                      for pair in zip(net.weights, net.biases) for a in pair)
    return with_crc(header + params)


def parse_header(data: bytes) -> dict:
    magic = data[:8]
    version, scalar_bytes, loss_code, num_layers = struct.unpack_from("<4I", data, 8)
    offset = 24
    sizes = list(struct.unpack_from(f"<{num_layers + 1}Q", data, offset))
    offset += 8 * (num_layers + 1)
    activations = list(struct.unpack_from(f"<{num_layers}I", data, offset))
    offset += 4 * num_layers
    (num_params,) = struct.unpack_from("<Q", data, offset)
    offset += 8
    return {"magic": magic, "version": version, "scalar_bytes": scalar_bytes, "loss_code": loss_code,
            "layer_sizes": sizes, "activation_codes": activations, "num_params": num_params,
            "params_offset": offset}


def make_network(name, dtype, seed=0):
    sizes, activation, output, loss = ARCHITECTURES[name]
    return cr.Network(sizes, activation=activation, output=output, loss=loss, dtype=dtype, seed=seed)


def trained_network(name, dtype):
    """A network whose weights have moved and whose biases are nonzero."""
    net = make_network(name, dtype, seed=3)
    rng = np.random.default_rng(4)
    X = np.ascontiguousarray(rng.standard_normal((16, net.layer_sizes[0])), dtype=dtype)
    y = np.ascontiguousarray(rng.random((16, net.layer_sizes[-1])) < 0.5, dtype=dtype)
    if net.loss == "cce":  # one-hot rows
        y = np.ascontiguousarray(np.eye(net.layer_sizes[-1])[rng.integers(0, net.layer_sizes[-1], 16)], dtype=dtype)
    net.fit(X, y, epochs=2, lr=0.1, batch_size=5, seed=0)
    assert all(np.any(b) for b in net.biases)
    return net, X


def snapshot(net):
    return [(a.dtype, a.shape, a.tobytes()) for a in list(net.weights) + list(net.biases)]


def small_model_bytes(tmp_path, dtype):
    net = make_network("tanh-sigmoid-bce", dtype, seed=1)
    net.biases[0][...] = [0.25, -0.5, 1.0]  # nonzero parameters in every section
    path = tmp_path / "small.crnn"
    net.save(path)
    return path.read_bytes()


def load_error(path):
    """The exception that loading `path` raises (None when it loads)."""
    try:
        cr.Network.load(path)
    except Exception as error:  # noqa: BLE001 - the type is what the caller checks
        return error
    return None


# -- the format -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_saved_file_is_exactly_the_documented_format(tmp_path, name, dtype):
    net, _ = trained_network(name, dtype)
    path = tmp_path / "model.crnn"
    net.save(path)
    data = path.read_bytes()
    assert data == encode_network(net)

    header = parse_header(data)  # and field by field, for a readable failure
    assert header["magic"] == MAGIC and header["version"] == VERSION
    assert header["scalar_bytes"] == np.dtype(dtype).itemsize
    assert header["loss_code"] == LOSS_CODES[net.loss]
    assert header["layer_sizes"] == list(net.layer_sizes)
    assert header["activation_codes"] == [ACTIVATION_CODES[a] for a in net.activations]
    assert header["num_params"] == net.n_params
    assert len(data) == header["params_offset"] + net.n_params * np.dtype(dtype).itemsize + 4
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])


@pytest.mark.parametrize("dtype", DTYPES)
def test_file_written_from_the_documentation_loads(tmp_path, dtype):
    sizes, activations = [3, 4, 2], ["relu", "identity"]
    rng = np.random.default_rng(9)
    num_params = 4 * 4 + 2 * 5
    values = rng.standard_normal(num_params).astype(np.dtype(dtype).newbyteorder("<"))
    header = encode_header(scalar_bytes=np.dtype(dtype).itemsize, loss_code=LOSS_CODES["mse"], layer_sizes=sizes,
                           activation_codes=[ACTIVATION_CODES[a] for a in activations])
    path = tmp_path / "handmade.crnn"
    path.write_bytes(with_crc(header + values.tobytes()))

    net = cr.Network.load(path)
    assert net.layer_sizes == tuple(sizes) and net.activations == tuple(activations)
    assert net.loss == "mse" and net.dtype == np.dtype(dtype)
    W1, b1, W2, b2 = np.split(values.astype(dtype), [12, 16, 24])
    assert np.array_equal(net.weights[0], W1.reshape(4, 3)) and np.array_equal(net.biases[0], b1)
    assert np.array_equal(net.weights[1], W2.reshape(2, 4)) and np.array_equal(net.biases[1], b2)


# -- round trip ------------------------------------------------------------------------


@pytest.mark.parametrize("as_path", [str, pathlib.Path], ids=["str", "pathlib"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_round_trip_is_bitwise(tmp_path, name, dtype, as_path):
    net, X = trained_network(name, dtype)
    path = as_path(tmp_path / "model.crnn")
    net.save(path)
    loaded = cr.Network.load(path)
    assert type(loaded) is cr.Network
    assert loaded.layer_sizes == net.layer_sizes and loaded.activations == net.activations
    assert loaded.loss == net.loss and loaded.dtype == net.dtype == np.dtype(dtype)
    assert snapshot(loaded) == snapshot(net)
    assert loaded.predict(X).tobytes() == net.predict(X).tobytes()


def test_float32_model_loads_as_float32(tmp_path):
    net = make_network("tanh-sigmoid-bce", "float32")
    net.save(tmp_path / "model.crnn")
    loaded = cr.Network.load(tmp_path / "model.crnn")
    assert loaded.dtype == np.float32
    assert all(a.dtype == np.float32 for a in list(loaded.weights) + list(loaded.biases))
    X = np.zeros((2, 2), dtype=np.float32)
    assert loaded.predict(X).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_loaded_network_is_independent_and_trainable(tmp_path, dtype):
    net, X = trained_network("tanh-sigmoid-bce", dtype)
    net.save(tmp_path / "model.crnn")
    loaded = cr.Network.load(tmp_path / "model.crnn")
    original = snapshot(net)
    loaded.weights[0][...] = 0.0
    y = np.zeros((len(X), 1), dtype=dtype)
    loaded.sgd_step(X, y, 0.1)
    assert snapshot(net) == original
    assert cr.Network.load(tmp_path / "model.crnn").weights[0].tobytes() == net.weights[0].tobytes()


def test_save_does_not_change_the_network(tmp_path):
    net, _ = trained_network("mixed-identity-mse", "float64")
    before = snapshot(net)
    net.save(tmp_path / "model.crnn")
    assert snapshot(net) == before


# -- atomic save ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_leaves_no_temporary_file(tmp_path, dtype):
    net, _ = trained_network("tanh-sigmoid-bce", dtype)
    net.save(tmp_path / "model.crnn")
    assert sorted(os.listdir(tmp_path)) == ["model.crnn"]
    first = (tmp_path / "model.crnn").read_bytes()

    net.weights[0][...] += 1.0  # save over the existing file
    net.save(tmp_path / "model.crnn")
    assert sorted(os.listdir(tmp_path)) == ["model.crnn"]
    second = (tmp_path / "model.crnn").read_bytes()
    assert second != first and second == encode_network(net)


def test_save_into_a_missing_directory_raises_and_leaves_nothing(tmp_path):
    net = make_network("tanh-sigmoid-bce", "float64")
    with pytest.raises(OSError):
        net.save(tmp_path / "missing" / "model.crnn")
    assert os.listdir(tmp_path) == []


def test_save_under_a_regular_file_raises_and_leaves_it_intact(tmp_path):
    # A parent path that is a regular file: fails even for root.
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"keep me")
    net = make_network("tanh-sigmoid-bce", "float64")
    with pytest.raises(OSError):
        net.save(blocker / "model.crnn")
    assert blocker.read_bytes() == b"keep me"
    assert os.listdir(tmp_path) == ["not-a-directory"]


def test_failed_save_onto_a_directory_leaves_it_intact(tmp_path):
    # The target path is an existing directory (holding an old model): the
    # rename fails, even for root, and nothing may be lost or left behind.
    old, _ = trained_network("tanh-sigmoid-bce", "float64")
    target = tmp_path / "model.crnn"
    target.mkdir()
    old.save(target / "inner.crnn")
    old_bytes = (target / "inner.crnn").read_bytes()

    new = make_network("tanh-sigmoid-bce", "float64", seed=8)
    with pytest.raises(OSError):
        new.save(target)
    assert target.is_dir() and os.listdir(target) == ["inner.crnn"]
    assert (target / "inner.crnn").read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["model.crnn"]


FAULTED_SAVE = """
import resource, signal, sys
import chainrule as cr
target, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
net = cr.Network([64, 64, 1], seed=8)  # ~33 kB of parameters: the write fails midway
try:
    net.save(target)
except OSError as error:
    print(type(error).__name__, error)
else:
    print("saved")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
def test_failed_save_over_an_existing_model_leaves_the_old_file_intact(tmp_path):
    # The write itself fails halfway (a file size limit, which holds for root
    # too): the old model at the target must survive, and nothing be left.
    target = tmp_path / "model.crnn"
    old, X = trained_network("tanh-sigmoid-bce", "float64")
    old.save(target)
    old_bytes = target.read_bytes()

    result = subprocess.run([sys.executable, "-c", FAULTED_SAVE, str(target), "4096"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OSError") and "model.crnn" in result.stdout, result.stdout
    assert target.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == [target.name]
    assert cr.Network.load(target).predict(X).tobytes() == old.predict(X).tobytes()


def test_a_long_target_name_saves(tmp_path):
    # The temporary file has a short name of its own, so any legal target name works.
    target = tmp_path / ("m" * 250)
    net, X = trained_network("tanh-sigmoid-bce", "float64")
    net.save(target)
    assert os.listdir(tmp_path) == [target.name]
    assert cr.Network.load(target).predict(X).tobytes() == net.predict(X).tobytes()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_save_onto_a_fifo_is_refused_and_leaves_it_a_fifo(tmp_path):
    # save replaces a regular file only: renaming over a FIFO (or /dev/null,
    # which a test must not risk) would replace it with a regular file.
    fifo = tmp_path / "model.crnn"
    os.mkfifo(fifo)
    net = make_network("tanh-sigmoid-bce", "float64")
    with pytest.raises(ValueError, match=r"path .*FIFO"):
        net.save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["model.crnn"]
    link = tmp_path / "link.crnn"
    os.symlink(fifo, link)  # the check follows a link
    with pytest.raises(ValueError, match=r"path .*FIFO"):
        net.save(link)
    assert os.path.islink(link)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_save_onto_a_symlink_to_a_model_replaces_the_link(tmp_path):
    # The documented choice: the rename replaces the link with the new file;
    # the file the link pointed to keeps the old model.
    old, X = trained_network("tanh-sigmoid-bce", "float64")
    real = tmp_path / "real.crnn"
    old.save(real)
    old_bytes = real.read_bytes()
    link = tmp_path / "model.crnn"
    os.symlink(real, link)
    new = make_network("tanh-sigmoid-bce", "float64", seed=8)
    new.save(link)
    assert not os.path.islink(link) and real.read_bytes() == old_bytes
    assert cr.Network.load(link).predict(X).tobytes() == new.predict(X).tobytes()


# -- loads that must fail ----------------------------------------------------------------


def test_load_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        cr.Network.load(tmp_path / "missing.crnn")
    assert "missing.crnn" in str(raised.value)
    # OSError's own str() appends the filename: the message names it once.
    assert str(raised.value).count("missing.crnn") == 1
    assert raised.value.filename == str(tmp_path / "missing.crnn")
    assert raised.value.strerror.startswith("cannot open")


def test_save_into_a_missing_directory_names_the_target_once(tmp_path):
    target = tmp_path / "no-such-directory" / "model.crnn"
    with pytest.raises(FileNotFoundError) as raised:
        cr.Network([2, 1], seed=0).save(target)
    assert str(raised.value).count("model.crnn") == 1 and raised.value.filename == str(target)


def test_load_of_a_directory_raises_os_error(tmp_path):
    with pytest.raises(OSError):
        cr.Network.load(tmp_path)


def test_model_format_error_is_a_value_error():
    assert issubclass(cr.ModelFormatError, ValueError)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_truncation_is_refused(tmp_path, dtype):
    data = small_model_bytes(tmp_path, dtype)
    path = tmp_path / "truncated.crnn"
    wrong = {}
    for length in range(len(data)):
        path.write_bytes(data[:length])
        error = load_error(path)
        if not isinstance(error, cr.ModelFormatError):
            wrong[length] = repr(error)
    assert wrong == {}, f"prefixes not refused with ModelFormatError (length: outcome): {wrong}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_bit_flip_and_byte_inversion_is_refused(tmp_path, dtype):
    data = small_model_bytes(tmp_path, dtype)
    params_start = parse_header(data)["params_offset"]
    path = tmp_path / "corrupted.crnn"
    wrong = {}
    for position in range(len(data)):
        for mask in [1 << bit for bit in range(8)] + [0xFF]:
            corrupted = bytearray(data)
            corrupted[position] ^= mask
            path.write_bytes(bytes(corrupted))
            error = load_error(path)
            if not isinstance(error, cr.ModelFormatError):
                wrong[(position, mask)] = repr(error)
            elif position >= params_start and not re.search(r"checksum|CRC|corrupt", str(error), re.I):
                wrong[(position, mask)] = f"parameter corruption not reported as such: {error}"
    assert wrong == {}, f"corruptions not refused (position, xor mask: outcome): {wrong}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_byte_mutations_are_refused(tmp_path, dtype):
    data = small_model_bytes(tmp_path, dtype)
    rng = np.random.default_rng(2024)
    path = tmp_path / "mutated.crnn"
    wrong = {}
    for trial in range(400):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):  # one to three bytes replaced
            position = int(rng.integers(len(data)))
            mutated[position] = (mutated[position] + int(rng.integers(1, 256))) % 256
        path.write_bytes(bytes(mutated))
        error = load_error(path)
        if not isinstance(error, cr.ModelFormatError):
            wrong[trial] = repr(error)
    assert wrong == {}


def test_trailing_bytes_are_refused(tmp_path):
    data = small_model_bytes(tmp_path, "float64")
    path = tmp_path / "long.crnn"
    for extra in [b"\x00", b"\x00" * 4, b"more data"]:
        path.write_bytes(data + extra)
        with pytest.raises(cr.ModelFormatError):
            cr.Network.load(path)
        # Even with the CRC recomputed over the longer body.
        path.write_bytes(with_crc(data[:-4] + extra))
        with pytest.raises(cr.ModelFormatError):
            cr.Network.load(path)


FOREIGN_FILES = {
    "empty": lambda rng: b"",
    "text": lambda rng: b"layer_sizes = [2, 3, 1]\nweights: 0.1 0.2 0.3\n" * 4,
    "random-7-bytes": lambda rng: rng.bytes(7),
    "random-24-bytes": lambda rng: rng.bytes(24),
    "random-4096-bytes": lambda rng: rng.bytes(4096),
    "png-header": lambda rng: b"\x89PNG\r\n\x1a\n" + rng.bytes(200),
    "npy-file": lambda rng: b"\x93NUMPY\x01\x00" + rng.bytes(120),
    "magic-only": lambda rng: MAGIC,
    "magic-then-random": lambda rng: MAGIC + rng.bytes(300),
    "magic-lowercase": lambda rng: b"chainrul" + rng.bytes(100),
}


@pytest.mark.parametrize("case", list(FOREIGN_FILES))
def test_foreign_file_is_refused(tmp_path, case):
    path = tmp_path / "foreign.bin"
    path.write_bytes(FOREIGN_FILES[case](np.random.default_rng(5)))
    with pytest.raises(cr.ModelFormatError):
        cr.Network.load(path)


@pytest.mark.parametrize("version", [0, 2, 3, 255, 2**31, 2**32 - 1])
def test_other_format_version_is_refused_by_version(tmp_path, version):
    data = small_model_bytes(tmp_path, "float64")
    body = bytearray(data[:-4])
    struct.pack_into("<I", body, 8, version)
    path = tmp_path / "other-version.crnn"
    path.write_bytes(with_crc(bytes(body)))  # a correct CRC: only the version is wrong
    with pytest.raises(cr.ModelFormatError) as raised:
        cr.Network.load(path)
    message = str(raised.value)
    assert re.search(rf"(?<!\d){version}(?!\d)", message), f"the message does not say which version: {message}"
    supported = re.sub(rf"(?<!\d){version}(?!\d)", "", message)
    assert re.search(r"version\D*1(?!\d)", supported), f"the message does not say version 1 is read: {message}"


def lying_header(**fields):
    """A header with a correct CRC and a body of 64 zero bytes, whatever it claims."""
    defaults = {"scalar_bytes": 8, "loss_code": LOSS_CODES["mse"], "layer_sizes": [2, 3, 1],
                "activation_codes": [2, 1]}
    defaults.update(fields)
    return with_crc(encode_header(**defaults) + bytes(64))


def raw_layer_count(num_layers):
    """A header whose L field says `num_layers` while holding sizes for one layer."""
    body = bytearray(encode_header(scalar_bytes=8, loss_code=1, layer_sizes=[2, 1], activation_codes=[1]))
    struct.pack_into("<I", body, 20, num_layers)
    return with_crc(bytes(body) + bytes(8 * 3))


LYING_HEADERS = {
    "sizes-2^31-squared": lambda: lying_header(layer_sizes=[2**31, 2**31, 1]),
    "sizes-2^32": lambda: lying_header(layer_sizes=[2**32, 2**32, 1]),
    "size-2^63": lambda: lying_header(layer_sizes=[2, 2**63, 1]),
    "size-2^64-1": lambda: lying_header(layer_sizes=[2**64 - 1, 3, 1]),
    "sizes-20000-squared": lambda: lying_header(layer_sizes=[20000, 20000, 1]),
    "sizes-1e6-wide": lambda: lying_header(layer_sizes=[1, 10**6, 1]),
    "size-zero": lambda: lying_header(layer_sizes=[2, 0, 1], num_params=0),
    "param-count-huge": lambda: lying_header(num_params=2**62),
    "param-count-max": lambda: lying_header(num_params=2**64 - 1),
    "param-count-zero": lambda: lying_header(num_params=0),
    "param-count-off-by-one": lambda: lying_header(num_params=13 + 1),
    "layer-count-zero": lambda: raw_layer_count(0),
    "layer-count-2^32-1": lambda: raw_layer_count(2**32 - 1),
    "layer-count-1e6": lambda: raw_layer_count(10**6),
    "scalar-bytes-2": lambda: lying_header(scalar_bytes=2),
    "scalar-bytes-16": lambda: lying_header(scalar_bytes=16),
    "scalar-bytes-0": lambda: lying_header(scalar_bytes=0),
    "loss-code-2": lambda: lying_header(loss_code=2),
    "activation-code-4": lambda: lying_header(activation_codes=[4, 1]),
    "activation-code-max": lambda: lying_header(activation_codes=[2, 2**32 - 1]),
    "bce-with-identity-output": lambda: lying_header(loss_code=LOSS_CODES["bce"], activation_codes=[2, 1]),
    "loss-code-3": lambda: lying_header(loss_code=3),
    "activation-code-5": lambda: lying_header(activation_codes=[5, 1]),
    "cce-with-identity-output": lambda: lying_header(loss_code=LOSS_CODES["cce"], activation_codes=[2, 1]),
    "softmax-output-with-mse": lambda: lying_header(layer_sizes=[2, 3, 2], activation_codes=[2, 4]),
    "softmax-in-a-hidden-layer": lambda: lying_header(loss_code=LOSS_CODES["cce"], layer_sizes=[2, 3, 2],
                                                      activation_codes=[4, 4]),
    "softmax-over-one-output": lambda: lying_header(loss_code=LOSS_CODES["cce"], activation_codes=[2, 4]),
}


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@pytest.mark.parametrize("case", list(LYING_HEADERS))
def test_header_lying_about_sizes_is_refused_without_allocating(tmp_path, case):
    path = tmp_path / "lying.crnn"
    path.write_bytes(LYING_HEADERS[case]())
    peak_before = peak_rss_bytes()
    with pytest.raises(cr.ModelFormatError):
        cr.Network.load(path)
    assert peak_rss_bytes() - peak_before < 256 * 2**20, "loading a lying header allocated a lot of memory"


@pytest.mark.parametrize("dtype", DTYPES)
def test_consistent_huge_header_with_short_body_is_truncated(tmp_path, dtype):
    # Sizes, count and CRC all agree; only the parameters are missing.
    sizes = [4000, 4000, 1]
    itemsize = np.dtype(dtype).itemsize
    body = encode_header(scalar_bytes=itemsize, loss_code=1, layer_sizes=sizes, activation_codes=[1, 1])
    path = tmp_path / "short.crnn"
    path.write_bytes(with_crc(body + bytes(itemsize * 10)))
    peak_before = peak_rss_bytes()
    with pytest.raises(cr.ModelFormatError):
        cr.Network.load(path)
    assert peak_rss_bytes() - peak_before < 64 * 2**20


@pytest.mark.parametrize("case", ["cce-with-identity-output", "softmax-output-with-mse", "softmax-in-a-hidden-layer",
                                  "softmax-over-one-output"])
def test_model_file_breaking_the_softmax_rules_is_refused(tmp_path, case):
    """The constructor's softmax rules hold for files too: a ModelFormatError that says so."""
    path = tmp_path / "bad.crnn"
    path.write_bytes(LYING_HEADERS[case]())
    with pytest.raises(cr.ModelFormatError, match="softmax"):
        cr.Network.load(path)
