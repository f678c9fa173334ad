"""The benchmark suite from a checkout: `python -m chainrule.bench` with the results written to bench/results/.

    python bench/run.py            # the full suite (about 4-5 minutes on 2 cores)
    python bench/run.py --quick    # a smoke run, under a minute

The suite itself ships in the package (python/chainrule/bench/, so that an
installed wheel runs it); this wrapper runs the installed chainrule's copy,
with the same options (--help), and keeps the checkout's default of writing
results.{json,md} and ratios.png to bench/results/ (not tracked by git).
Run it with the Python that has chainrule installed (`.venv/bin/python bench/run.py`).
"""

from pathlib import Path

from chainrule.bench.run import main

if __name__ == "__main__":
    main(prog="python bench/run.py", default_out=Path(__file__).resolve().parent / "results")
