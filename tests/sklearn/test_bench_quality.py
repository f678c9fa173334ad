"""chainrule.bench.quality: the model-quality benchmark runs, and its table says what the rows hold.

No speed is asserted here (speed targets live in the benchmark's output,
docs/performance.md): only that both libraries ran on the same splits and
that the table reports them faithfully.
"""

import json

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("threadpoolctl")

from chainrule.bench import quality


def test_quick_run_reports_both_libraries_as_json(capsys):
    quality.main(["--quick", "--datasets", "iris", "wine", "--seeds", "2", "--json", "-"])
    out = json.loads(capsys.readouterr().out)
    assert [row["dataset"] for row in out["rows"]] == ["iris", "wine"]
    for row in out["rows"]:
        assert row["task"] == "classification"
        for library in ("sklearn", "chainrule"):
            assert len(row[library]) == 2
            for result in row[library]:
                assert 0.5 < result["score"] <= 1.0  # iris and wine: well above chance
                assert result["seconds"] > 0 and 1 <= result["epochs"] <= 200


def test_splits_standardize_on_the_training_part():
    X, y, task = quality.load("friedman1", 400)
    X_train, X_test, y_train, y_test = quality.split(X, y, task, seed=1)
    assert (len(X_train), len(X_test)) == (300, 100)
    assert abs(X_train.mean()) < 1e-12 and abs(y_train.mean()) < 1e-12 and abs(y_train.std() - 1) < 1e-12
    assert quality.load("classification", 500)[0].shape == (500, 40)
    assert quality.load("regression", 500)[0].shape == (500, 50)
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        quality.load("mnist", 10)


def _row(sk_scores, cr_scores, sk_seconds=2.0, cr_seconds=0.5):
    def results(scores, seconds):
        return [{"score": s, "seconds": seconds, "epochs": 10} for s in scores]
    return {"dataset": "d", "task": "regression", "records": 10, "features": 2,
            "sklearn": results(sk_scores, sk_seconds), "chainrule": results(cr_scores, cr_seconds)}


def test_table_flags_a_score_more_than_one_std_below():
    lines = quality.table([_row([0.90, 0.92, 0.94], [0.91, 0.93, 0.95]),   # higher: fine
                           _row([0.90, 0.92, 0.94], [0.905, 0.91, 0.915]),  # 0.01 below, std 0.02: within
                           _row([0.90, 0.92, 0.94], [0.85, 0.86, 0.87])]).splitlines()
    assert [line.split("|")[5].strip() for line in lines[2:]] == ["yes", "yes", "no"]
    assert "4.0x" in lines[2] and "0.9200 ± 0.0200" in lines[2]


@pytest.mark.parametrize("argument", ["--seeds", "--repeats"])
def test_bad_counts_are_refused_naming_the_option(argument, capsys):
    with pytest.raises(SystemExit):
        quality.main([argument, "0"])
    assert f"{argument} must be >= 1, got 0" in capsys.readouterr().err


def test_repeats_keep_the_shortest_time_of_the_same_fit():
    X, y, task = quality.load("iris", 0)
    parts = quality.split(X, y, task, seed=0)
    once = quality.run_one("chainrule", *parts, task, 0)
    thrice = quality.run_one("chainrule", *parts, task, 0, repeats=3)
    assert thrice["score"] == once["score"] and thrice["epochs"] == once["epochs"]
