"""The GIL is released while the core works; threads and Ctrl-C are safe.

These tests measure progress, not time: a thread that holds the GIL for the
whole of a call leaves the main thread no chance to run, however slow or fast
the machine is.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import chainrule as cr


def make_data(num_records, num_features, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_records, num_features)).astype(dtype)
    y = (rng.random((num_records, 1)) < 0.5).astype(dtype)
    return X, y


def main_thread_progress_during(work):
    """Runs work() in a thread; counts main-thread loop turns until it ends."""
    started = threading.Event()

    def run():
        started.set()
        work()

    worker = threading.Thread(target=run)
    worker.start()
    started.wait()
    turns = 0
    while worker.is_alive():
        turns += 1
    worker.join()
    return turns


@pytest.mark.parametrize("call", ["fit", "predict", "cost", "gradients"])
def test_the_gil_is_released_while_the_core_works(call):
    # 256 x 256 weights, 4096 records: each call takes tens of milliseconds.
    net = cr.Network([256, 256, 1], seed=0)
    X, y = make_data(4096, 256)
    work = {
        "fit": lambda: net.fit(X, y, epochs=2, lr=0.01, batch_size=64, seed=0),
        "predict": lambda: [net.predict(X) for _ in range(10)],
        "cost": lambda: [net.cost(X, y) for _ in range(10)],
        "gradients": lambda: [net.gradients(X, y) for _ in range(3)],
    }[call]
    # With the GIL held for the whole call the main thread would count a
    # handful of turns at most (those before the call starts).
    assert main_thread_progress_during(work) > 10_000


def test_concurrent_predict_equals_serial(in_threads):
    net = cr.Network([20, 32, 16, 3], activation=["tanh", "relu"], output="sigmoid", seed=1)
    inputs = [make_data(500, 20, seed=s)[0] for s in range(8)]
    serial = [net.predict(X) for X in inputs]
    results = [None] * len(inputs)

    def predict(i):
        for _ in range(20):
            results[i] = net.predict(inputs[i])

    in_threads(predict, len(inputs))
    for got, expected in zip(results, serial):
        assert np.array_equal(got, expected)


def test_concurrent_small_predicts_equal_serial(in_threads):
    # predict keeps the workspace of a small call for the next (up to 64 KB:
    # here, up to ~140 records): threads predicting 1 to 131 records, their
    # counts changing call by call, take it in turn or make their own, and
    # get the serial values.
    net = cr.Network([20, 32, 16, 3], activation=["tanh", "relu"], output="sigmoid", seed=1)
    inputs = [make_data(1 + 13 * s, 20, seed=s)[0] for s in range(11)]
    serial = [net.predict(X) for X in inputs]
    mismatches = []

    def predict(i):
        for k in range(300):
            j = (i + k) % len(inputs)
            if not np.array_equal(net.predict(inputs[j]), serial[j]):
                mismatches.append(j)

    in_threads(predict, len(inputs))
    assert mismatches == []


def test_predict_during_fit_sees_whole_steps_and_fit_is_unaffected():
    X, y = make_data(2000, 64, seed=2)
    net = cr.Network([64, 64, 1], seed=3)
    twin = net.copy()
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(net.predict(X[:4]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        history = net.fit(X, y, epochs=5, lr=0.1, batch_size=16, seed=4)
    finally:
        stop.set()
        watcher.join()
    # Readers never change training: the same run without them is bitwise equal.
    assert np.array_equal(history, twin.fit(X, y, epochs=5, lr=0.1, batch_size=16, seed=4))
    for w, w_twin in zip(net.weights, twin.weights):
        assert np.array_equal(w, w_twin)
    assert len(seen) > 0 and all(np.isfinite(p).all() for p in seen)


def test_a_second_fit_on_the_same_network_raises_busy_error():
    X, y = make_data(200, 8, seed=5)
    net = cr.Network([8, 4, 1], seed=6)
    in_fit, release = threading.Event(), threading.Event()
    outcome = {}

    def hold_after_first_epoch(epoch, cost):
        in_fit.set()  # the callback runs inside fit, which keeps the network's training lock
        release.wait(timeout=30)

    def first():
        outcome["history"] = net.fit(X, y, epochs=2, lr=0.1, seed=0, callback=hold_after_first_epoch)

    worker = threading.Thread(target=first)
    worker.start()
    assert in_fit.wait(timeout=30)
    before = [w.copy() for w in net.weights]
    try:
        with pytest.raises(cr.BusyError, match="another thread"):
            net.fit(X, y, epochs=1, lr=0.1)
        with pytest.raises(cr.BusyError):
            net.gradients(X, y)
        assert all(np.array_equal(w, b) for w, b in zip(net.weights, before))
        assert net.predict(X[:3]).shape == (3, 1)  # readers are let in between epochs
    finally:
        release.set()
        worker.join()
    assert len(outcome["history"]) == 2


def test_two_networks_train_in_two_threads(in_threads):
    X, y = make_data(1000, 16, seed=7)
    nets = [cr.Network([16, 8, 1], seed=s) for s in (8, 9)]
    twins = [n.copy() for n in nets]
    histories = [None, None]

    def train(i):
        histories[i] = nets[i].fit(X, y, epochs=5, lr=0.1, batch_size=10, seed=i)

    in_threads(train, 2)
    for i in range(2):
        assert np.array_equal(histories[i], twins[i].fit(X, y, epochs=5, lr=0.1, batch_size=10, seed=i))


INTERRUPTED_FIT = textwrap.dedent("""
    import signal, sys, time
    import numpy as np
    import chainrule as cr
    # A shell that starts jobs in the background (`cmd &`) hands them SIGINT
    # ignored, and Python then leaves it ignored: ask for KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2048, 512))
    y = (rng.random((2048, 1)) < 0.5).astype(float)
    net = cr.Network([512, 512, 1], seed=0)
    print("ready", flush=True)
    try:
        net.fit(X, y, epochs=1000, lr=0.01, batch_size=8, seed=0)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    ok = all(np.isfinite(w).all() for w in net.weights) and np.isfinite(net.predict(X[:2])).all()
    print("finite" if ok else "not finite", flush=True)
    net.fit(X[:16], y[:16], epochs=1, lr=0.01)  # still usable: the training lock was let go
    print("usable", flush=True)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery to a child differs on Windows")
def test_ctrl_c_stops_fit_with_keyboard_interrupt():
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED_FIT], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        # Let fit start (it runs for minutes if nothing stops it), then interrupt.
        threading.Event().wait(0.5)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.split() == ["interrupted", "finite", "usable"]


def test_set_num_threads_round_trips_and_refuses_bad_counts():
    original = cr.get_num_threads()
    assert original >= 1
    try:
        for n in (1, 2):
            cr.set_num_threads(n)
            assert cr.get_num_threads() == n
        with pytest.raises(ValueError, match="n must be >= 1"):
            cr.set_num_threads(0)
        with pytest.raises(TypeError, match="n must be an integer"):
            cr.set_num_threads(1.5)
        assert cr.get_num_threads() == 2  # unchanged by the refused calls
    finally:
        cr.set_num_threads(original)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_any_thread_count_trains_and_predicts_bit_for_bit_alike(dtype):
    # Products of 2^22 multiply-adds and more (128 x 128 x 256 here) are cut
    # into tiles that depend on the shape alone, each computed whole by the
    # GEMM library on one thread: every sum keeps its order.
    X, y = make_data(512, 256, seed=10, dtype=dtype)
    runs = []
    original = cr.get_num_threads()
    try:
        for n in (1, 2, 3):
            cr.set_num_threads(n)
            net = cr.Network([256, 128, 1], dtype=dtype, seed=11)
            history = net.fit(X, y, epochs=2, lr=0.1, batch_size=128, seed=12)
            runs.append([history, net.predict(X), *net.weights, *net.biases])
    finally:
        cr.set_num_threads(original)
    for other in runs[1:]:
        assert all(a.tobytes() == b.tobytes() for a, b in zip(runs[0], other))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_small_network_predicts_the_same_bits_when_threads_share_the_chunks(dtype):
    # No product of a 30-16-1 network is large enough to split, so predict
    # hands each thread a range of 256-record chunks instead (5000 records:
    # 20 chunks, the last one short). Each record is computed as on one thread.
    X, _ = make_data(5000, 30, seed=17, dtype=dtype)
    net = cr.Network([30, 16, 1], dtype=dtype, seed=18)
    original = cr.get_num_threads()
    try:
        outputs = []
        for n in (1, 2, 3):
            cr.set_num_threads(n)
            outputs.append(net.predict(X))
    finally:
        cr.set_num_threads(original)
    one_by_one = np.concatenate([net.predict(X[i:i + 256]) for i in range(0, len(X), 256)])
    for other in outputs[1:]:
        assert other.tobytes() == outputs[0].tobytes()
    assert one_by_one.tobytes() == outputs[0].tobytes()


def test_threads_sharing_predict_report_the_earliest_record_that_overflows():
    # Inputs of 1e30 through identity layers overflow float32 in records 700
    # (chunk 2) and 4000 (chunk 15). The threads share the 20 chunks (849
    # parameters: enough work for a range of one chunk); whichever of them
    # fails first, the error names record 700, as on one thread.
    X = np.ones((5000, 4), dtype="float32")
    X[[700, 4000]] = 1e30
    net = cr.Network([4, 64, 8, 1], activation="identity", output="identity", loss="mse", dtype="float32",
                     seed=19)
    net.weights[0][:] = 1e10
    original = cr.get_num_threads()
    try:
        for n in (1, 2, 3):
            cr.set_num_threads(n)
            with pytest.raises(cr.DivergenceError, match="record 700 is"):
                net.predict(X)
    finally:
        cr.set_num_threads(original)


def test_a_forked_child_trains_on_threads_of_its_own():
    # The pool's workers do not survive a fork: the child must start its own
    # (not wait forever on the parent's) and train exactly as the parent does.
    X, y = make_data(512, 256, seed=13)
    original = cr.get_num_threads()
    cr.set_num_threads(2)
    try:
        net = cr.Network([256, 128, 1], seed=14)
        net.fit(X, y, epochs=1, lr=0.1, batch_size=128, seed=15)  # the pool now runs in this process
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: train a copy, send its weights, and leave at once
            try:
                child = net.copy()
                child.fit(X, y, epochs=1, lr=0.1, batch_size=128, seed=16)
                os.write(writer, hashlib.sha256(child.weights[0].tobytes()).digest())  # fits the pipe's buffer
            finally:
                os._exit(0)
        os.close(writer)
        deadline = time.monotonic() + 60
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail("the forked child did not finish its fit within 60 s")
            time.sleep(0.05)
        with os.fdopen(reader, "rb") as pipe:
            got = pipe.read()
        net.fit(X, y, epochs=1, lr=0.1, batch_size=128, seed=16)
        assert got == hashlib.sha256(net.weights[0].tobytes()).digest()
    finally:
        cr.set_num_threads(original)


def test_gradients_from_two_threads_are_each_their_own(in_threads):
    # gradients copies the core's gradient while it still holds its training
    # lock: another thread's gradients (or fit) cannot overwrite it in between.
    net = cr.Network([64, 64, 1], seed=13)
    data = [make_data(256, 64, seed=s) for s in (14, 15)]
    expected = [net.gradients(X, y) for X, y in data]
    wrong = []
    done = 0

    def hammer(i):
        nonlocal done
        X, y = data[i]
        for _ in range(200):
            try:
                got = net.gradients(X, y)
            except cr.BusyError:
                continue  # the other thread was in the middle of its own
            done += 1
            if not all(np.array_equal(a, b) for pair in zip(got, expected[i]) for a, b in zip(*pair)):
                wrong.append(i)

    in_threads(hammer, 2)
    assert done > 0 and not wrong


def test_fit_is_not_starved_by_threads_that_predict():
    # Readers queue behind a waiting fit (a writer-first lock): with four
    # threads predicting in a loop, fit slows by the share of the CPU it
    # loses, not by orders of magnitude (glibc's reader-first rwlock made it
    # ~250x slower). The bound is generous: a liveness check, not a timing.
    X, y = make_data(2048, 256, seed=16)
    net = cr.Network([256, 256, 1], seed=17)
    start = time.perf_counter()
    net.fit(X, y, epochs=1, lr=0.01, batch_size=16, seed=0)
    alone = time.perf_counter() - start
    stop = threading.Event()

    def predict_forever():
        while not stop.is_set():
            net.predict(X[:512])

    readers = [threading.Thread(target=predict_forever) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        start = time.perf_counter()
        net.fit(X, y, epochs=1, lr=0.01, batch_size=16, seed=0)
        contended = time.perf_counter() - start
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert contended < 25 * alone + 0.5, f"fit took {contended:.2f} s with readers, {alone:.2f} s alone"


# The same bits for any thread count, under every OpenBLAS kernel this CPU can
# run. OPENBLAS_CORETYPE is read when the library loads, so each kernel gets a
# child process of its own. The wheel's OpenBLAS (scipy-openblas32) holds five
# x86-64 kernel sets; every other name it accepts is an alias of one of them
# (Zen runs Haswell's, Cooperlake and SapphireRapids run SkylakeX's). Each
# entry: the name forced, the name OpenBLAS reports for that set (it calls the
# Prescott set by its first alias, Katmai), and the CPU flags the set needs, as
# /proc/cpuinfo lists them (Linux).
KERNELS = {
    "Prescott": ("Katmai", {"pni"}),
    "Nehalem": ("Nehalem", {"ssse3", "sse4_1", "sse4_2"}),
    "Sandybridge": ("Sandybridge", {"avx"}),
    "Haswell": ("Haswell", {"avx2", "fma"}),
    "SkylakeX": ("SkylakeX", {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}),
}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


# Each case: layer sizes, activations (hidden, output), loss, records, batch
# size, shuffle, epochs. Sizes that are multiples of no kernel's tile; batches
# of 1, 7, 64, 100 and 1000 records; deep, wide, and the benchmark's W4 and W5
# shapes (W5 for one batch of 64: its products are tiled all the same).
THREAD_CASES = [
    ([256, 128, 1], "sigmoid", "sigmoid", "bce", 512, 128, True, 2),
    ([37, 301, 203, 3], "tanh", "softmax", "cce", 1000, 1000, True, 2),
    ([129, 1000, 1], "relu", "identity", "mse", 300, 64, True, 2),
    ([513, 77, 65, 33, 9], "tanh", "sigmoid", "bce", 300, 100, False, 2),
    ([30, 17, 1], "sigmoid", "sigmoid", "bce", 100, 1, True, 1),
    ([61, 250, 5], "relu", "sigmoid", "bce", 140, 7, True, 1),
    ([784, 256, 256, 10], "sigmoid", "sigmoid", "bce", 256, 64, True, 2),
    ([1024, 4096, 4096, 16], "sigmoid", "sigmoid", "bce", 64, 64, False, 1),
    # Tiled products: predict takes these records in chunks of 2048 and a short one.
    ([256, 128, 8], "relu", "sigmoid", "bce", 5000, 500, True, 1),
    # Small layers (kernels/small_linear.cpp) in batches large enough that the
    # threads share their records (forward, dZ W) and the rows of dW.
    ([10, 32, 1], "sigmoid", "identity", "mse", 40000, 20000, True, 1),
    ([64, 3, 2], "tanh", "identity", "mse", 40000, 20000, False, 1),
]

THREAD_CHILD = textwrap.dedent("""
    import ctypes, hashlib, json, sys
    import numpy as np
    import scipy_openblas32
    import chainrule as cr
    lib = ctypes.CDLL(scipy_openblas32.get_lib_dir() + "/" + scipy_openblas32.get_library(fullname=True))
    lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
    dtype = sys.argv[1]
    result = {"core": lib.scipy_openblas_get_corename().decode(), "cases": []}
    for sizes, hidden, output, loss, n, batch, shuffle, epochs in json.loads(sys.argv[2]):
        rng = np.random.default_rng(len(sizes) * 1000 + n)
        X = rng.standard_normal((n, sizes[0])).astype(dtype)
        if loss == "cce":
            y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
        elif loss == "bce":
            y = (rng.random((n, sizes[-1])) < 0.5).astype(dtype)
        else:
            y = rng.standard_normal((n, sizes[-1])).astype(dtype)
        digests = []
        for threads in (1, 2, 3, 4):
            cr.set_num_threads(threads)
            net = cr.Network(sizes, activation=hidden, output=output, loss=loss, dtype=dtype, seed=3)
            history = net.fit(X, y, epochs=epochs, lr=0.002, batch_size=batch, shuffle=shuffle, seed=4)
            h = hashlib.sha256(np.asarray(history).tobytes())
            for array in (*net.weights, *net.biases, net.predict(X), np.float64(net.cost(X, y)),
                          *[g for pair in net.gradients(X, y) for g in pair]):
                h.update(np.ascontiguousarray(array).tobytes())
            digests.append(h.hexdigest())
        result["cases"].append(digests)
    print(json.dumps(result))
""")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_the_same_bits_for_any_thread_count_under_each_openblas_kernel(kernel, dtype):
    if cr._core.gemm_backend() != "openblas":
        pytest.skip(f"this build multiplies with {cr._core.gemm_backend()!r}, not OpenBLAS")
    flags = cpu_flags()
    if flags is None:
        pytest.skip("the CPU's flags are read from /proc/cpuinfo, which this system does not have")
    reported, needs = KERNELS[kernel]
    missing = needs - flags
    if missing:
        pytest.skip(f"this CPU cannot run OpenBLAS's {kernel} kernels (no {', '.join(sorted(missing))})")
    env = dict(os.environ, OPENBLAS_CORETYPE=kernel)
    env.pop("OPENBLAS_NUM_THREADS", None)
    child = subprocess.run([sys.executable, "-c", THREAD_CHILD, dtype, json.dumps(THREAD_CASES)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    # A name OpenBLAS does not take, or a set it will not run here, falls back
    # to the CPU's own set: this checks that the forced one is what ran.
    assert result["core"] == reported, f"OPENBLAS_CORETYPE={kernel} ran OpenBLAS's {result['core']} kernels"
    for case, digests in zip(THREAD_CASES, result["cases"]):
        assert len(set(digests)) == 1, f"{case} under {result['core']}: 1, 2, 3, 4 threads give {digests}"


GETTER_CHILD = textwrap.dedent("""
    import numpy as np
    import chainrule as cr
    X = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    net = cr.Network([128, 128], output="identity", loss="mse", dtype="float32", seed=1)
    first = net.predict(X)   # the first product of the process
    cr.get_num_threads()     # a getter: it must change nothing
    print(int((net.predict(X) != first).sum()))
""")


def test_the_first_product_of_a_process_is_computed_as_every_later_one():
    # The GEMM library's own threads are turned off before the first product,
    # not at the first thread call: otherwise OpenBLAS splits this 1M
    # multiply-add product over its threads once, in another order.
    env = dict(os.environ)
    env.pop("OPENBLAS_NUM_THREADS", None)
    child = subprocess.run([sys.executable, "-c", GETTER_CHILD], env=env, capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["0"]


POOL_CHILD = textwrap.dedent("""
    import os, resource
    import numpy as np
    import chainrule as cr

    def cpu_ticks():  # user + system time of each thread of this process, by thread id
        ticks = {}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks[int(tid)] = int(fields[11]) + int(fields[12])
        return ticks

    rng = np.random.default_rng(0)
    X = rng.standard_normal((2048, 512))
    y = (rng.random((2048, 1)) < 0.5).astype(float)
    start = cr.Network([512, 512, 1], seed=0)
    cr.set_num_threads(1)
    reference = start.copy()
    reference.fit(X, y, epochs=1, lr=0.01, batch_size=256, seed=0)
    base_threads = len(os.listdir("/proc/self/task"))

    # No room for a thread's stack (8 MiB by default): the pool cannot start
    # its workers. (With room for a few, OpenBLAS could not allocate its
    # buffers in them, and it ends the process when that happens.)
    limited = start.copy()
    with open("/proc/self/status") as status:
        vm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, ((vm_kib + 6 * 1024) * 1024, hard))
    cr.set_num_threads(32)
    limited.fit(X, y, epochs=1, lr=0.01, batch_size=256, seed=0)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print("limited", all(np.array_equal(a, b) for a, b in zip(limited.weights, reference.weights)))

    # The worker claims parts only when the system runs it: on a busy machine
    # the caller may take them all for a while, so the fits go on (up to 30)
    # until the worker has done a quarter of the caller's CPU time.
    cr.set_num_threads(2)
    same, before = True, cpu_ticks()
    for _ in range(30):
        net = start.copy()
        net.fit(X, y, epochs=1, lr=0.01, batch_size=256, seed=0)
        same = same and all(np.array_equal(a, b) for a, b in zip(net.weights, reference.weights))
        after = cpu_ticks()
        main = after[os.getpid()] - before[os.getpid()]
        helper = max(after[t] - before.get(t, 0) for t in after if t != os.getpid())
        if main >= 20 and helper >= 0.25 * main:
            break
    print("same", same)
    print("threads", len(os.listdir("/proc/self/task")) - base_threads)
    print("shared", helper >= 0.25 * main, main, helper)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and limits the address space (Linux)")
def test_the_pool_carries_on_when_threads_cannot_start_and_recovers_after():
    # Under an address-space limit the pool computes with the threads it has
    # (here the caller alone: the same bits); once the limit is lifted, a new
    # setting gets its workers, and they take their share of the work.
    child = subprocess.run([sys.executable, "-c", POOL_CHILD], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    lines = dict(line.split(" ", 1) for line in child.stdout.splitlines())
    assert lines["limited"] == "True"
    assert lines["same"] == "True"
    assert lines["threads"] == "1"  # the one worker of 2 threads: none left over from the failed start
    assert lines["shared"].startswith("True"), lines["shared"]
