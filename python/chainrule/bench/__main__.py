"""`python -m chainrule.bench`: the benchmark suite (chainrule.bench.run; --help lists the options)."""

from .run import main

main()
