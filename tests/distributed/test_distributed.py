"""chainrule.distributed under MPI: exact against one process, repeatable, and failing cleanly.

Each test starts ``mpiexec -n K`` on mpi_worker.py (bounded by a timeout, so
that a hang fails the test instead of stalling the suite) and checks what the
processes wrote. The single-process runs they are compared with are built
here: one Network.fit call per global step, on the records that step takes
from every shard (docs/math.md, "Distributed training").
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# In the test extra, so the README's test command runs these; a wheel test on a
# Python that mpi4py or mpich has no release for skips them (as test_dask.py does).
MPI = pytest.importorskip("mpi4py.MPI")

import chainrule  # noqa: E402
from chainrule import distributed, optim  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import mpi_worker as worker  # noqa: E402  (imports mpi4py: after the skip above)

WORKER = str(Path(__file__).parent / "mpi_worker.py")
RUN_TIMEOUT = 120  # seconds for one mpiexec run; a run takes about one


def mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel's, in the environment's bin
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    assert found, "mpiexec not found: pip install 'chainrule[mpi]' (mpi4py, mpich)"
    return found


def run_mpi(processes, scenario, out, timeout=RUN_TIMEOUT, check=True, **options):
    command = [mpiexec(), "-n", str(processes), sys.executable, WORKER, scenario, str(out)]
    command += [f"{key}={value}" for key, value in options.items()]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, f"mpiexec exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def trained(processes, out, **options):
    """Each rank's parameters and history after a distributed run; every rank must hold the same."""
    run_mpi(processes, "train", out, **options)
    params = [np.load(out / f"params_{r}.npy") for r in range(processes)]
    histories = [np.load(out / f"history_{r}.npy") for r in range(processes)]
    for r in range(1, processes):
        assert params[r].tobytes() == params[0].tobytes(), f"rank {r}'s parameters differ from rank 0's"
        assert histories[r].tobytes() == histories[0].tobytes(), f"rank {r}'s history differs from rank 0's"
    return params[0], histories[0]


def one_process(processes, dtype="float64", optimizer="sgd", uneven="0", shuffle="0", weights="0", epochs=3,
                batch=4, records=101):
    """The distributed run's steps, taken by one process: step j's records are those of every shard's
    epoch order [j b, (j + 1) b), in rank order."""
    X, Y, W = worker.make_data(records, dtype)
    shards = worker.shards_for(records, processes, uneven == "1")
    net = worker.make_network(3, dtype)  # rank 0's parameters, which fit hands every rank
    opt = worker.make_optimizer(optimizer)
    lengths = [s.stop - s.start for s in shards]
    history = []
    for epoch in range(epochs):
        orders = [distributed.shard_order(n, 5, r, epoch) if shuffle == "1" else np.arange(n)
                  for r, n in enumerate(lengths)]
        cost = 0.0
        for j in range(-(-max(lengths) // batch)):
            rows = np.concatenate([s.start + order[j * batch:(j + 1) * batch] for s, order in zip(shards, orders)])
            weight = W[rows] if weights == "1" else None
            step_cost = net.fit(X[rows], Y[rows], epochs=1, batch_size=len(rows), shuffle=False, optimizer=opt,
                                sample_weight=weight)[0]
            cost += step_cost * (weight.sum() if weight is not None else len(rows))
        history.append(cost / (W.sum() if weights == "1" else records))
    return net._core.params().copy(), np.array(history)


# Summing per-process partial gradients rounds differently from one product
# over all the step's records (an ulp or so per step), relative to the
# largest parameter: float64 within 1e-10 (the contract; a few 1e-16 seen),
# float32 within 2e-6, some 16 ulps of float32 (eps 1.2e-7; about one seen).
TOLERANCE = {"float64": 1e-10, "float32": 2e-6}


@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("uneven", ["0", "1"])
def test_matches_one_process(tmp_path, processes, dtype, optimizer, uneven):
    options = dict(dtype=dtype, optimizer=optimizer, uneven=uneven, shuffle="1")
    params, history = trained(processes, tmp_path, **options)
    expected, expected_history = one_process(processes, **options)
    scale = np.abs(expected).max()
    assert np.abs(params - expected).max() <= TOLERANCE[dtype] * scale
    np.testing.assert_allclose(history, expected_history, rtol=TOLERANCE[dtype])
    # A distributed step is a real step: the parameters moved from rank 0's start.
    start = worker.make_network(3, dtype)._core.params()
    assert np.abs(params - start).max() > 1e3 * TOLERANCE[dtype] * scale


@pytest.mark.parametrize("processes", [2, 3])
def test_matches_one_process_with_sample_weight_in_order(tmp_path, processes):
    options = dict(optimizer="sgd", uneven="1", shuffle="0", weights="1")
    params, history = trained(processes, tmp_path, **options)
    expected, expected_history = one_process(processes, **options)
    assert np.abs(params - expected).max() <= 1e-10 * np.abs(expected).max()
    np.testing.assert_allclose(history, expected_history, rtol=1e-10)


def test_repeats_bit_for_bit_at_any_thread_count(tmp_path):
    runs = []
    for i, threads in enumerate([1, 1, 2]):
        out = tmp_path / str(i)
        out.mkdir()
        runs.append(trained(3, out, optimizer="adam", uneven="1", shuffle="1", threads=threads))
    for params, history in runs[1:]:
        assert params.tobytes() == runs[0][0].tobytes()
        assert history.tobytes() == runs[0][1].tobytes()


@pytest.mark.parametrize("processes", [2, 3])
def test_rank_order_sum_adds_in_rank_order_on_every_path(tmp_path, processes):
    run_mpi(processes, "sums", tmp_path)
    for n in (7, 50001):
        for kind in ("float32", "float64"):
            expected = worker.sum_input(0, n, kind)
            for r in range(1, processes):
                expected = expected + worker.sum_input(r, n, kind)  # ((v_0 + v_1) + v_2): rank order
            for r in range(processes):
                got = np.load(tmp_path / f"sum_{n}_{kind}_{r}.npy")
                assert got.tobytes() == expected.tobytes(), (n, kind, r)
    if processes == 3:  # the order shows: another order gives other bits
        v = [worker.sum_input(r, 50001, "float32") for r in range(3)]
        assert ((v[2] + v[1]) + v[0]).tobytes() != ((v[0] + v[1]) + v[2]).tobytes()


def test_memory_mapped_shards_train_in_place_as_arrays_do(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    params, history = trained(3, tmp_path / "a", optimizer="adam", uneven="1", shuffle="1", mmap="1")
    expected, expected_history = trained(3, tmp_path / "b", optimizer="adam", uneven="1", shuffle="1")
    assert params.tobytes() == expected.tobytes()
    assert history.tobytes() == expected_history.tobytes()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_csr_shards_train_as_dense_shards_do(tmp_path, dtype):
    # The first layer runs over the stored entries alone, summed in another
    # order than the dense product's: equal within rounding, every rank
    # holding the same bits.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    options = dict(dtype=dtype, optimizer="adam", uneven="1", shuffle="1", holes="1")
    params, history = trained(3, tmp_path / "a", sparse="1", **options)
    expected, expected_history = trained(3, tmp_path / "b", **options)
    scale = np.abs(expected).max()
    assert np.abs(params - expected).max() <= TOLERANCE[dtype] * scale
    np.testing.assert_allclose(history, expected_history, rtol=TOLERANCE[dtype])
    start = worker.make_network(3, dtype)._core.params()
    assert np.abs(params - start).max() > 1e3 * TOLERANCE[dtype] * scale


def test_progress_is_reported_by_rank_0_only(tmp_path):
    result = run_mpi(3, "train", tmp_path, progress="lines", epochs=4)
    lines = [line for line in result.stdout.splitlines() if line.startswith("Iteration")]
    assert [line.split(",")[0] for line in lines] == [f"Iteration {e}" for e in range(1, 5)]


def test_seed_none_draws_one_seed_for_every_rank(tmp_path):
    trained(2, tmp_path, shuffle="1", seed="none")  # each rank's parameters equal rank 0's


def test_saves_on_rank_0_a_model_equal_to_every_rank(tmp_path):
    params, _ = trained(2, tmp_path, optimizer="adam")
    loaded = chainrule.Network.load(tmp_path / "model.crn")
    assert loaded._core.params().tobytes() == params.tobytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("model")) == ["model.crn"]


@pytest.mark.parametrize("bad, expected", [("nan", "non-finite"), ("width", "6 features")])
@pytest.mark.parametrize("processes", [2, 3])
def test_a_bad_shard_stops_every_rank_naming_it(tmp_path, processes, bad, expected):
    run_mpi(processes, "bad_shard", tmp_path, bad=bad)
    for r in range(processes):
        message = (tmp_path / f"error_{r}.txt").read_text()
        assert message.startswith("ValueError: rank 1 of"), f"rank {r}: {message}"
        assert expected in message, f"rank {r}: {message}"
        assert "no process trained" in message


def read_outcomes(out, processes):
    return [(out / f"error_{r}.txt").read_text() for r in range(processes)]


def test_a_callback_returning_false_on_rank_0_stops_every_rank_after_that_epoch(tmp_path):
    run_mpi(3, "callback", tmp_path, callback="stop", epochs=5)
    assert read_outcomes(tmp_path, 3) == ["history 2"] * 3


def test_a_callback_raising_on_rank_0_stops_every_rank_naming_it(tmp_path):
    run_mpi(3, "callback", tmp_path, callback="raise", epochs=5)
    outcomes = read_outcomes(tmp_path, 3)
    assert outcomes[0] == "ValueError: the callback's own error"  # rank 0: its own error, as Network.fit raises it
    for message in outcomes[1:]:
        assert message == ("RuntimeError: rank 0 of 3 failed; rank 0: ValueError: the callback's own error "
                           "(after an epoch; every process stopped there)")
    params = [np.load(tmp_path / f"params_{r}.npy") for r in range(3)]
    assert all(p.tobytes() == params[0].tobytes() for p in params)  # all stopped after the same epoch


def test_an_interrupt_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    run_mpi(2, "interrupt", tmp_path)
    outcomes = read_outcomes(tmp_path, 2)
    assert outcomes[1].startswith("KeyboardInterrupt"), outcomes[1]
    assert outcomes[0].startswith("RuntimeError: rank 1 of 2 failed"), outcomes[0]
    params = [np.load(tmp_path / f"params_{r}.npy") for r in range(2)]
    assert params[0].tobytes() == params[1].tobytes()


def test_divergence_is_raised_by_every_rank_at_the_same_step(tmp_path):
    run_mpi(3, "diverge", tmp_path)
    outcomes = read_outcomes(tmp_path, 3)
    assert outcomes[0].startswith("DivergenceError: training diverged at epoch 1, batch "), outcomes[0]
    assert outcomes == [outcomes[0]] * 3
    params = [np.load(tmp_path / f"params_{r}.npy") for r in range(3)]
    assert np.isfinite(params[0]).all()  # the last finite values, before the offending step
    assert all(p.tobytes() == params[0].tobytes() for p in params)


def test_ranks_called_with_different_options_refuse_to_train(tmp_path):
    run_mpi(2, "disagree", tmp_path)
    for message in read_outcomes(tmp_path, 2):
        assert message.startswith("ValueError: the processes disagree on epochs: rank 0 has 3, rank 1 has 4")


def test_a_killed_rank_ends_the_run_without_a_model_file(tmp_path):
    started = time.monotonic()
    result = run_mpi(2, "kill", tmp_path, timeout=90, check=False, after="1.5")
    assert result.returncode != 0
    assert time.monotonic() - started < 90
    assert not (tmp_path / "model.crn").exists()
    assert "BAD TERMINATION" in result.stdout + result.stderr  # MPICH's launcher saw the process die


def test_shard_splits_records_contiguously_and_near_equally():
    parts = [distributed.shard(10, r, 3) for r in range(3)]
    assert parts == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert [distributed.shard(2, r, 3) for r in range(3)] == [slice(0, 1), slice(1, 2), slice(2, 2)]
    with pytest.raises(ValueError, match="rank"):
        distributed.shard(10, 3, 3)


def test_shard_order_is_a_permutation_keyed_by_seed_rank_and_epoch():
    order = distributed.shard_order(50, 5, 1, 2)
    assert sorted(order) == list(range(50))
    assert order.tobytes() == distributed.shard_order(50, 5, 1, 2).tobytes()
    for other in [(6, 1, 2), (5, 0, 2), (5, 1, 3)]:
        assert order.tobytes() != distributed.shard_order(50, *other).tobytes()


def test_rank_order_sum_with_one_process_is_the_identity_and_fit_matches_network_fit(make_data):
    # COMM_SELF: one process, the reducer's sums return their input; the
    # distributed step is then Network.fit's up to the order of its sums.
    X, Y = make_data(40, 5, 2, "bce")
    a = worker.make_network(1, "float64")
    b = worker.make_network(1, "float64")
    history = distributed.fit(a, X, Y, comm=MPI.COMM_SELF, epochs=2, batch_size=8, shuffle=False,
                              optimizer=optim.SGD(lr=0.1))
    expected = b.fit(X, Y, epochs=2, batch_size=8, shuffle=False, optimizer=optim.SGD(lr=0.1))
    np.testing.assert_allclose(history, expected, rtol=1e-12)
    np.testing.assert_allclose(a._core.params(), b._core.params(), rtol=1e-12, atol=1e-15)


class FailingSum:
    """A reducer of one process whose `fail_at`-th call raises, as a failed collective would."""

    rank, size = 0, 1

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, values):
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("the collective failed")


def fit_with(net, X, Y, reducer, optimizer):
    return net._fit(X, Y, 1, None, 8, False, 0, None, 10, None, False, optimizer, None, 0.0, None, None,
                    reducer=reducer)


def test_a_reducer_that_raises_stops_fit_before_that_step_and_frees_the_network(make_data):
    X, Y = make_data(40, 5, 2, "bce")
    # Calls: 1 the meeting on entry, 2 rank 0's parameters, 3 the stopping rule's values,
    # then per step the gradient (4, 6, ...) and the loss with the statuses (5, 7, ...).
    for fail_at, steps_taken in [(1, 0), (2, 0), (4, 0), (5, 0), (6, 1), (9, 2)]:
        net, opt = worker.make_network(1, "float64"), optim.Adam(lr=0.01)
        with pytest.raises(ConnectionError, match="the collective failed"):
            fit_with(net, X, Y, FailingSum(fail_at), opt)
        reference, reference_opt = worker.make_network(1, "float64"), optim.Adam(lr=0.01)
        if steps_taken:
            fit_with(reference, X[:8 * steps_taken], Y[:8 * steps_taken], FailingSum(), reference_opt)
        assert net._core.params().tobytes() == reference._core.params().tobytes(), fail_at
        assert opt._state_for(net).steps == steps_taken
        fit_with(net, X, Y, FailingSum(), opt)  # the network is not left locked
