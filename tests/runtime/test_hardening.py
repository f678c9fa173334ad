"""What a hostile or careless caller can do, and what chainrule does about it.

Each case that used to crash or hang runs in a child process with a timeout,
so that a regression fails the test instead of the test run:

* the interpreter exits while a daemon thread is inside fit, predict or save;
* a symbolic link or a FIFO waits at the name of save's temporary file;
* another process replaces a model file (float32 by float64) while it loads;
* a process forks while another thread trains the network the child uses;
* a callback changes X or y under fit;
* a masked array is passed where arrays are read in place;
* fit nests inside fit callbacks in a thread with a small stack.
"""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import chainrule as cr

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes, signals and file types")


def run_child(source, *args, timeout=60, cwd=None):
    """Runs `source` in a fresh interpreter; a crash is a return code, a hang a failure."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(source), *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child process did not finish within {timeout} s (a hang)")


def make_data(num_records, num_features, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_records, num_features)).astype(dtype)
    y = (rng.random((num_records, 1)) < 0.5).astype(dtype)
    return X, y


# -- masked arrays ------------------------------------------------------------------


@pytest.mark.parametrize("method, argument", [("predict", "X")] + [(method, argument)
                                                                    for method in ["cost", "gradients", "sgd_step", "fit"]
                                                                    for argument in ["X", "y"]])
def test_masked_arrays_are_refused_with_a_type_error(method, argument):
    net = cr.Network([3, 4, 1], seed=0)
    X, y = make_data(8, 3)
    before = [a.copy() for a in net.weights + net.biases]
    arrays = {"X": X, "y": y}
    masked = np.ma.masked_array(arrays[argument], mask=np.zeros_like(arrays[argument], dtype=bool))
    masked.mask[0] = True
    arrays[argument] = masked
    call = {
        "predict": lambda: net.predict(arrays["X"]),
        "cost": lambda: net.cost(arrays["X"], arrays["y"]),
        "gradients": lambda: net.gradients(arrays["X"], arrays["y"]),
        "sgd_step": lambda: net.sgd_step(arrays["X"], arrays["y"], 0.1),
        "fit": lambda: net.fit(arrays["X"], arrays["y"], epochs=1, seed=0),
    }[method]
    with pytest.raises(TypeError, match=rf"^{argument} is a numpy\.ma\.MaskedArray"):
        call()
    assert all(np.array_equal(a, b) for a, b in zip(net.weights + net.biases, before))


def test_the_sklearn_estimators_refuse_masked_arrays():
    pytest.importorskip("sklearn")
    from chainrule import sklearn
    X, y = make_data(40, 3)
    labels = y.ravel().astype(int)
    estimator = sklearn.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.raises(TypeError, match="X is a numpy.ma.MaskedArray"):
        estimator.fit(np.ma.masked_array(X, mask=X > 1), labels)
    with pytest.raises(TypeError, match="y is a numpy.ma.MaskedArray"):
        estimator.fit(X, np.ma.masked_array(labels, mask=labels == 0))
    estimator.fit(X, labels)  # plain arrays still work; then predict refuses a masked X too
    with pytest.raises(TypeError, match="X is a numpy.ma.MaskedArray"):
        estimator.predict(np.ma.masked_array(X, mask=X > 1))


# -- the interpreter exits while a daemon thread is in the core -----------------------

DAEMON_AT_EXIT = """
    import sys, threading, time
    import numpy as np
    import chainrule as cr
    call = sys.argv[1]
    rng = np.random.default_rng(0)
    X = rng.random((2048, 64)); y = (rng.random((2048, 1)) < 0.5) * 1.0
    net = cr.Network([64, 64, 1], seed=0)
    inside = threading.Event()

    def loop():
        while True:
            inside.set()
            if call == "fit":
                net.fit(X, y, epochs=1)
            elif call == "predict":
                net.predict(X)
            elif call == "save":
                net.save("model.crnn")
            elif call == "callback":  # Python code inside fit, asleep when the interpreter exits
                net.fit(X[:64], y[:64], epochs=10**9, callback=lambda epoch, cost: time.sleep(0.001))

    threading.Thread(target=loop, daemon=True).start()
    inside.wait()
    time.sleep(0.3)
    print("exiting", flush=True)
    sys.exit(3)
"""


@posix_only
@pytest.mark.parametrize("call", ["fit", "predict", "save", "callback"])
def test_exit_while_a_daemon_thread_is_in_the_core_keeps_the_exit_status(call, tmp_path):
    # It was SIGABRT (std::terminate) every time: Python ends such a thread
    # with pthread_exit when it takes the GIL back, through a noexcept frame.
    for _ in range(3):
        done = run_child(DAEMON_AT_EXIT, call, cwd=tmp_path)
        assert done.returncode == 3, f"exit status {done.returncode}: {done.stderr[-1000:]}"
        assert done.stdout == "exiting\n" and "terminate" not in done.stderr, done.stderr[-1000:]
    if call == "save":  # the thread finished its save or never began one: a whole model, no temporary file
        assert os.listdir(tmp_path) == ["model.crnn"]
        assert cr.Network.load(tmp_path / "model.crnn").layer_sizes == (64, 64, 1)


# -- save's temporary file ------------------------------------------------------------

# The names save used to give its temporary file: .chainrule-save-<pid>-<n>.tmp,
# n counting the saves of the process from 0. Planting something at each of
# them catches a save that uses a predictable name, whatever n it is at.
PLANT_AT_OLD_NAMES = """
    import os, sys
    import chainrule as cr
    directory, what = sys.argv[1], sys.argv[2]
    victim = os.path.join(directory, "victim.txt")
    for n in range(64):
        name = os.path.join(directory, f".chainrule-save-{os.getpid()}-{n}.tmp")
        if what == "link":
            os.symlink(victim, name)
        else:
            os.mkfifo(name)
    net = cr.Network([3, 4, 1], seed=0)
    net.save(os.path.join(directory, "model.crnn"))
    net.save(os.path.join(directory, "model.crnn"))
    print("saved", flush=True)
"""


@posix_only
@pytest.mark.parametrize("what", ["link", "fifo"])
def test_save_neither_follows_nor_opens_what_waits_at_a_temporary_name(what, tmp_path):
    # A link there made save overwrite the link's target and turned the model
    # into a link to it; a FIFO there blocked save forever.
    victim = tmp_path / "victim.txt"
    victim.write_text("not a model")
    done = run_child(PLANT_AT_OLD_NAMES, tmp_path, what, timeout=30)
    assert done.returncode == 0 and done.stdout == "saved\n", done.stderr[-1000:]
    assert victim.read_text() == "not a model"
    model = tmp_path / "model.crnn"
    assert stat.S_ISREG(os.lstat(model).st_mode), "the model path is not a regular file"
    assert cr.Network.load(model).layer_sizes == (3, 4, 1)
    planted = [name for name in os.listdir(tmp_path) if name.startswith(".chainrule-save-")]
    assert len(planted) == 64, "save removed or replaced a file that it did not create"


@posix_only
def test_save_creates_the_file_with_the_mode_of_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        cr.Network([3, 4, 1], seed=0).save(tmp_path / "model.crnn")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "model.crnn").st_mode) == 0o640
    assert os.listdir(tmp_path) == ["model.crnn"]


def test_saves_from_many_threads_to_one_folder_each_leave_their_own_model(tmp_path, in_threads):
    # Each save has a temporary file of its own (created exclusively): none
    # sees another's file, and every target holds its own network.
    nets = [cr.Network([20, 10, 1], seed=s) for s in range(8)]
    errors = []

    def save_many(i):
        try:
            for _ in range(20):
                nets[i].save(tmp_path / f"model{i}.crnn")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    in_threads(save_many, len(nets))
    assert not errors
    assert sorted(os.listdir(tmp_path)) == sorted(f"model{i}.crnn" for i in range(len(nets)))
    for i, net in enumerate(nets):
        assert np.array_equal(cr.Network.load(tmp_path / f"model{i}.crnn").weights[0], net.weights[0])


# -- load reads one file --------------------------------------------------------------

ALTERNATE_DTYPES = """
    import sys
    import chainrule as cr
    target = sys.argv[1]
    nets = [cr.Network([200, 100, 1], dtype=dtype, seed=1) for dtype in ("float32", "float64")]
    print("ready", flush=True)
    while True:
        for net in nets:
            net.save(target)
"""


@posix_only
def test_load_sees_one_whole_file_while_another_process_replaces_it(tmp_path):
    # It opened the file twice (the dtype, then the network): a float32 file
    # replaced by a float64 one in between failed as "holds a float32 network".
    target = tmp_path / "model.crnn"
    cr.Network([200, 100, 1], seed=1).save(target)
    saver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(ALTERNATE_DTYPES), str(target)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert saver.stdout.readline() == "ready\n"
        dtypes, errors = set(), []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline or len(dtypes) < 2:
            try:
                dtypes.add(cr.Network.load(target).dtype.name)
            except Exception as error:  # noqa: BLE001 - counted below
                errors.append(f"{type(error).__name__}: {error}")
            if time.monotonic() > deadline + 30:
                break
    finally:
        saver.kill()
        saver.wait(timeout=30)
        saver.stdout.close()
    assert not errors, f"{len(errors)} loads failed, e.g. {errors[:3]}"
    assert dtypes == {"float32", "float64"}


# -- fork while another thread trains -------------------------------------------------


@posix_only
def test_a_child_forked_while_another_thread_trains_can_use_that_network():
    # The training thread held the network's locks at fork; in the child no
    # thread would ever let them go, and predict waited forever. The child now
    # gets the network at a step boundary with its locks free.
    X, y = make_data(2048, 64, seed=1)
    net = cr.Network([64, 64, 1], seed=2)
    stop = threading.Event()

    def train():
        while not stop.is_set():
            net.fit(X, y, epochs=1, batch_size=1, seed=0)

    trainer = threading.Thread(target=train)
    trainer.start()
    statuses = []
    try:
        time.sleep(0.2)
        for _ in range(10):
            pid = os.fork()
            if pid == 0:  # the child: predict, train, save; its status says how it went
                status = 1
                try:
                    ok = np.isfinite(net.predict(X[:8])).all()
                    ok = ok and np.isfinite(net.fit(X[:64], y[:64], epochs=1, seed=0)).all()
                    status = 0 if ok else 1
                finally:
                    os._exit(status)
            deadline = time.monotonic() + 30
            while (result := os.waitpid(pid, os.WNOHANG)) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    pytest.fail("the forked child hung using the network")
                time.sleep(0.01)
            statuses.append(os.waitstatus_to_exitcode(result[1]))
    finally:
        stop.set()
        trainer.join()
    assert statuses == [0] * 10


@posix_only
def test_a_fork_from_a_callback_lets_the_fit_go_on_in_both_processes():
    # The forking thread holds the training lock in the child too: that fit
    # continues there, and the lock is let go when it returns.
    X, y = make_data(256, 8, seed=3)
    net = cr.Network([8, 8, 1], seed=4)
    parent = os.getpid()
    children = []

    def fork_once(epoch, cost):
        if epoch == 1 and os.getpid() == parent:
            children.append(os.fork())

    history = net.fit(X, y, epochs=4, seed=0, callback=fork_once)
    if os.getpid() != parent:
        status = 1
        try:
            net.fit(X, y, epochs=1, seed=0)  # the lock was let go: not BusyError
            status = 0 if len(history) == 4 else 1
        finally:
            os._exit(status)
    deadline = time.monotonic() + 30
    while (result := os.waitpid(children[0], os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(children[0], signal.SIGKILL)
            os.waitpid(children[0], 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(result[1]) == 0
    assert len(history) == 4


# -- a callback that changes the data -------------------------------------------------


@pytest.mark.parametrize("change", ["bce targets out of [0, 1]", "cce targets zeroed", "nan in X"])
def test_a_callback_that_changes_x_or_y_under_fit_raises(change):
    # fit checked X and y on entry only: y[:] = 5 under bce made the costs
    # [0.68, -9.72, -39.9, -84.4], zeroed cce targets costs of 0.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((64, 4))
    if change == "cce targets zeroed":
        net = cr.Network([4, 6, 3], output="softmax", loss="cce", seed=6)
        y = np.eye(3)[rng.integers(0, 3, 64)]
    else:
        net = cr.Network([4, 6, 1], seed=6)
        y = (rng.random((64, 1)) < 0.5) * 1.0
    seen = []

    def vandal(epoch, cost):
        seen.append(cost)
        if change == "bce targets out of [0, 1]":
            y[:] = 5.0
        elif change == "cce targets zeroed":
            y[:] = 0.0
        else:
            X[3, 2] = np.nan

    with pytest.raises(ValueError, match=r"X or y changed during fit \(in the callback after epoch 1\)"):
        net.fit(X, y, epochs=4, seed=0, callback=vandal)
    assert len(seen) == 1 and seen[0] > 0  # no epoch ran on the changed data
    assert all(np.isfinite(w).all() for w in net.weights)


def test_callback_writes_data_false_skips_the_check_for_dense_x_only():
    # The promise is the caller's: a callback that breaks it is not caught
    # for dense X (the targets of 5 train on, as before the check existed),
    # while CSR X, whose indices address memory, is checked again all the same.
    import scipy.sparse as sparse  # a test extra

    rng = np.random.default_rng(5)
    X = rng.standard_normal((64, 4))
    y = (rng.random((64, 1)) < 0.5) * 1.0

    def vandal(epoch, cost):
        y[:] = 5.0

    net = cr.Network([4, 6, 1], seed=6)
    costs = net.fit(X, y, epochs=3, seed=0, callback=vandal, callback_writes_data=False)
    assert len(costs) == 3 and costs[0] > 0 > costs[2]  # the later epochs ran on the targets of 5
    y[:] = (rng.random((64, 1)) < 0.5) * 1.0
    with pytest.raises(ValueError, match=r"X or y changed during fit \(in the callback after epoch 1\)"):
        cr.Network([4, 6, 1], seed=6).fit(sparse.csr_matrix(X), y, epochs=3, seed=0, callback=vandal,
                                          callback_writes_data=False)


def test_a_callback_may_change_the_data_to_other_valid_data():
    X, y = make_data(64, 4, seed=7)
    net = cr.Network([4, 6, 1], seed=8)

    def flip(epoch, cost):
        y[:] = 1.0 - y  # still targets in [0, 1]

    assert len(net.fit(X, y, epochs=3, seed=0, callback=flip)) == 3


# -- fit nested in fit callbacks ------------------------------------------------------

NESTED_FITS = """
    import sys, threading
    import numpy as np
    import chainrule as cr
    rng = np.random.default_rng(0)
    X = rng.random((16, 4)); y = (rng.random((16, 1)) < 0.5) * 1.0
    depth = [0]

    def nest(epoch, cost):  # each callback trains another network, whose callback does the same
        depth[0] += 1
        cr.Network([4, 4, 1], seed=0).fit(X, y, epochs=1, callback=nest)

    def run():
        try:
            nest(0, 0.0)
        except RecursionError as error:
            print("RecursionError", depth[0], error, flush=True)

    threading.stack_size(int(sys.argv[1]))
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the bindings measure the stack left with glibc's pthread_getattr_np")
@pytest.mark.parametrize("stack_kib", [256, 8192])
def test_fit_nested_in_callbacks_stops_with_recursion_error_before_the_stack_ends(stack_kib):
    # In a thread with a 256 KiB stack the nesting segfaulted: each level
    # holds C++ frames that Python's recursion limit does not count.
    done = run_child(NESTED_FITS, stack_kib * 1024)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-1000:]}"
    words = done.stdout.split()
    assert words[:1] == ["RecursionError"], done.stdout + done.stderr[-1000:]
    assert 2 <= int(words[1]) <= 33
    assert "fit called from a fit callback nested" in done.stdout


def test_callbacks_that_raise_do_not_count_as_nesting():
    # The nesting depth is let go on every way out of a callback: after more
    # raising callbacks than fit may nest, a callback may still call fit.
    X, y = make_data(6, 2, seed=9)
    net, inner = cr.Network([2, 4, 1], seed=10), cr.Network([2, 4, 1], seed=11)

    def fail(epoch, cost):
        raise KeyError(epoch)

    for _ in range(40):
        with pytest.raises(KeyError):
            net.fit(X, y, epochs=2, seed=0, callback=fail)
    histories = []
    net.fit(X, y, epochs=2, seed=0, callback=lambda epoch, cost: histories.append(inner.fit(X, y, epochs=1)))
    assert len(histories) == 2
