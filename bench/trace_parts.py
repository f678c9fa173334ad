"""How the core's threads share the work: sums up the trace that a build with
CMake's CHAINRULE_TRACE_PARTS=ON writes to the file $CHAINRULE_TRACE.

    cmake -S . -B build/trace -DCMAKE_BUILD_TYPE=Release -DCHAINRULE_BLAS=scipy-openblas \\
          -DCHAINRULE_BUILD_BENCH=ON -DCHAINRULE_TRACE_PARTS=ON ...
    cmake --build build/trace --target fit_bench
    CHAINRULE_TRACE=one.txt build/trace/fit_bench float W4 1 3
    CHAINRULE_TRACE=two.txt build/trace/fit_bench float W4 2 3
    python bench/trace_parts.py two.txt --alone one.txt --segments 3

For one trace: the wall time from the first run of parts to the end of the
last; how much of it the runs took, and how much lay between them (the
calling thread working alone, or waiting for its caller); and per thread,
the time it computed parts and the time it was idle during the runs (it
ran out of parts and waited for the others, or the run had one part, which
its caller computes). With --alone, a
trace of the same program on one thread: the same runs, each computed whole
by its caller. Their parts' summed time against this trace's is the work
that the threads added by running side by side (cache lines that move
between cores, a shared L3, a slower core), apart from any time idle.
--segments N cuts both traces into N runs of equal counts of runs and sums
each up apart: fit_bench's repeats (the 3 above), of which it reports the
best, when a virtual machine's second core is slow for some of them.
"""

from __future__ import annotations

import argparse
import bisect
from collections import defaultdict
from pathlib import Path

RUNS = ("run", "alone")
PARTS = ("part", "alone-part")


def read(path: Path):
    """The runs and the parts of a trace, each a list of (thread, begin, end, parts-or-part), by begin."""
    runs, parts = [], []
    with open(path) as lines:
        for line in lines:
            kind, thread, part, begin, end = line.split()
            record = (int(thread), int(begin), int(end), int(part))
            if kind in RUNS:
                runs.append(record)
            elif kind in PARTS:
                parts.append(record)
            else:
                raise ValueError(f"{path}: unknown record kind {kind!r}")
    if not runs:
        raise ValueError(f"{path}: no run of parts was recorded (was the build made with CHAINRULE_TRACE_PARTS=ON?)")
    return outermost(runs, by_thread=False), outermost(parts, by_thread=True)


def outermost(records, by_thread):
    """The records by begin, less those within an earlier one (a run of parts started inside a part)."""
    kept, ends = [], defaultdict(int)
    for record in sorted(records, key=lambda r: r[1]):
        key = record[0] if by_thread else None
        if record[1] >= ends[key]:
            kept.append(record)
            ends[key] = record[2]
    return kept


def summary(runs, parts) -> dict:
    """Wall time, time in the runs, and per thread the time computing parts and idle, over `runs`."""
    starts = [p[1] for p in parts]
    busy = defaultdict(int)   # per thread: the time it computed parts
    idle = defaultdict(int)   # per thread: the time of the runs it took part in that it did not compute
    threads = sorted({p[0] for p in parts} | {r[0] for r in runs})
    in_runs = 0
    for caller, begin, end, _ in runs:
        in_runs += end - begin
        computed = defaultdict(int)
        i = bisect.bisect_left(starts, begin)
        while i < len(parts) and parts[i][1] < end:
            computed[parts[i][0]] += parts[i][2] - parts[i][1]
            i += 1
        for thread in threads:
            busy[thread] += computed[thread]
            idle[thread] += end - begin - computed[thread]
    wall = runs[-1][2] - runs[0][1]
    return {"runs": len(runs), "wall": wall, "in_runs": in_runs, "busy": dict(busy), "idle": dict(idle),
            "work": sum(busy.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--alone", type=Path, help="a trace of the same program on one thread")
    parser.add_argument("--segments", type=int, default=1, help="sum up this many equal runs of runs apart")
    args = parser.parse_args(argv)
    runs, parts = read(args.trace)
    alone = read(args.alone) if args.alone else None
    if alone and len(alone[0]) != len(runs):
        raise SystemExit(f"{args.alone} holds {len(alone[0])} runs and {args.trace} {len(runs)}: not the same program")
    ms = 1e-6
    for k in range(args.segments):
        first, last = k * len(runs) // args.segments, (k + 1) * len(runs) // args.segments
        s = summary(runs[first:last], parts)
        print(f"{args.trace}, runs {first}-{last - 1}: {s['wall'] * ms:.1f} ms, "
              f"{s['in_runs'] * ms:.1f} ms in the runs, {(s['wall'] - s['in_runs']) * ms:.1f} ms between them")
        for thread in sorted(s["busy"]):
            print(f"  thread {thread}: computed parts {s['busy'][thread] * ms:.1f} ms, "
                  f"idle in the runs {s['idle'][thread] * ms:.1f} ms")
        if alone:
            one = summary(alone[0][first:last], alone[1])
            print(f"  on one thread ({args.alone}): parts {one['work'] * ms:.1f} ms; "
                  f"side by side / alone: {s['work'] / one['work']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
