"""Checks that tools/build_wheels.sh runs on a built wheel and on its test run.

    python tools/wheel_checks.py tag SHOW_JSON WHEEL
        `auditwheel show --json` of a repaired wheel: its symbol versions allow a
        manylinux tag, that tag is the one in the wheel's file name, the CPU
        instructions need nothing beyond the x86-64 baseline (auditwheel's ISA
        check), and the only library outside the manylinux policy is OpenBLAS,
        which the runtime dependency scipy-openblas32 provides (not vendored).
    python tools/wheel_checks.py contents WHEEL
        the wheel holds one shared object, chainrule/_core*.so: no library was
        grafted into it.
    python tools/wheel_checks.py flags COMPILE_COMMANDS
        no compile command of the build asks for the build machine's CPU
        (-march=native, -mtune=native) or any other -march: the wheel's baseline
        is the compiler's default target; prints the flags of one kernel.
    python tools/wheel_checks.py skips JUNIT_XML
        every skipped test of a pytest run, grouped by module and reason, with
        the skips for a missing optional dependency listed apart.

Exits non-zero, saying why, when a check fails.
"""

from __future__ import annotations

import collections
import json
import re
import sys
import xml.etree.ElementTree as ET
import zipfile

# The soname of scipy-openblas32's library, left to the runtime dependency
# (auditwheel repair --exclude) rather than vendored a second time.
OPENBLAS = "libscipy_openblas.so"


def fail(message: str) -> None:
    sys.exit(f"FAIL: {message}")


def check_tag(show_json: str, wheel: str) -> None:
    with open(show_json) as f:
        shown = json.load(f)
    match = re.search(r"-((?:many|musl)linux_[0-9]+_[0-9]+_\w+?)\.whl$", wheel)
    if not match:
        fail(f"{wheel}: no manylinux platform tag in the file name")
    name_tag, sym_tag = match.group(1), shown["sym_tag"]
    print(f"  auditwheel show: symbol versions allow {sym_tag}; file name says {name_tag}; "
          f"overall {shown['overall_tag']} (external libraries: {sorted(shown['external_libs'])})")
    if not sym_tag.startswith("manylinux_"):
        fail(f"the symbol versions allow only {sym_tag}, not a manylinux tag")
    if sym_tag != name_tag:
        fail(f"auditwheel show reports {sym_tag}, the file name says {name_tag}")
    if shown.get("unsupported_isa"):
        fail("auditwheel reports CPU instructions beyond the architecture's baseline")
    others = sorted(set(shown["external_libs"]) - {OPENBLAS})
    if others:
        fail(f"libraries outside the manylinux policy besides {OPENBLAS}: {others}")
    # The overall tag is linux_* only because OpenBLAS is not vendored: the
    # upgrade to the wheel's tag must ask for nothing but OpenBLAS's removal.
    upgrade = shown.get("policy_upgrades", {}).get(name_tag, {}).get("libs_to_eliminate", [])
    if shown["overall_tag"] != name_tag and sorted(upgrade) != [OPENBLAS]:
        fail(f"overall tag {shown['overall_tag']}: reaching {name_tag} needs removing {upgrade}")


def check_contents(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        objects = [n for n in z.namelist() if re.search(r"\.so(\.|$)", n)]
    if len(objects) != 1 or not re.fullmatch(r"chainrule/_core\.[^/]+\.so", objects[0]):
        fail(f"expected chainrule/_core*.so alone, the wheel holds {objects}")
    print(f"  contents: {objects[0]} is the only shared object (nothing vendored)")


def check_flags(compile_commands: str) -> None:
    with open(compile_commands) as f:
        commands = json.load(f)
    if not commands:
        fail(f"{compile_commands} lists no compile command")
    for entry in commands:
        command = entry.get("command") or " ".join(entry.get("arguments", []))
        found = re.findall(r"-m(?:arch|tune|cpu)=\S+|-mavx\S*|-mfma", command)
        if found:
            fail(f"{entry['file']} is compiled with {found}: the wheel would not run on every CPU of its platform")
    kernel = next((e for e in commands if e["file"].endswith("linear.cpp")), commands[0])
    command = kernel.get("command") or " ".join(kernel.get("arguments", []))
    flags = [word for word in command.split() if word.startswith(("-O", "-f", "-m", "-std", "-D"))]
    print(f"  {len(commands)} compile commands, none with -march/-mtune/-mavx/-mfma; "
          f"{kernel['file'].rsplit('/', 1)[-1]}: {' '.join(flags)}")


def report_skips(junit_xml: str) -> None:
    root = ET.parse(junit_xml).getroot()
    by_module = collections.defaultdict(collections.Counter)
    missing = collections.defaultdict(set)
    for case in root.iter("testcase"):
        skipped = case.find("skipped")
        if skipped is None:
            continue
        # A skipped test: classname "tests.test_api[.Class]"; a module skipped
        # whole at collection: classname "", name "tests.test_torch", and the
        # reason in the element's text rather than its message.
        dotted = f"{case.get('classname') or ''}.{case.get('name') or ''}".split(".")
        module = next((part for part in dotted if part.startswith("test_")), "?") + ".py"
        reason = (skipped.get("message") or "").strip()
        if reason == "collection skipped":
            found = re.search(r"Skipped: (.*?)['\"]?\)?$", (skipped.text or "").strip())
            reason = "the whole module, at collection: " + (found.group(1) if found else skipped.text or "")
        by_module[module][reason] += 1
        # pytest.importorskip's message: "could not import 'torch': No module named 'torch'".
        found = re.search(r"could not import '([^']+)'", reason)
        if found:
            missing[module].add(found.group(1))
    totals = root if root.tag == "testsuite" else root.find("testsuite")
    print(f"  pytest: {totals.get('tests')} tests, {totals.get('failures')} failed, {totals.get('errors')} errors, "
          f"{totals.get('skipped')} skipped")
    if missing:
        print("  SKIPPED FOR A MISSING OPTIONAL DEPENDENCY:")
        for module in sorted(missing):
            whole = any(reason.startswith("the whole module") for reason in by_module[module])
            print(f"    {module}: {', '.join(sorted(missing[module]))} not installed ("
                  + ("the whole module" if whole else f"{sum(by_module[module].values())} tests") + ")")
    else:
        print("  no test skipped for a missing optional dependency")
    for module in sorted(by_module):
        for reason, count in by_module[module].most_common():
            if not re.search(r"could not import '", reason):
                print(f"  skipped for another reason: {module}: {count} x {reason}")


def main() -> None:
    commands = {"tag": check_tag, "contents": check_contents, "flags": check_flags, "skips": report_skips}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
