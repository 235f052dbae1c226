"""Turn a pytest JUnit XML report of the attack battery into an attack-by-backend table.

    .venv/bin/python -m pytest tests/backends/test_containment.py tests/backends/test_attacks.py \
        tests/backends/test_hostile.py --junitxml=/tmp/attacks.xml -q
    .venv/bin/python scripts/attack_table.py /tmp/attacks.xml

Each cell is the outcome of one test on one backend: "contained" (passed), "known gap"
(strict xfail: the test documents an attack that succeeds there), "FAILED", or "skipped".
A hostile-program test (test_hostile.py) that passed says how the run ended and when, from
the properties it recorded: "stopped 3.1 s" (killed at its 3 s timeout, every process
confirmed gone), "stopped 3.9 s, confirmed late" (the kill's end was confirmed after the 1 s
grace and the error said so), "agent ended 0.1 s" (the program ended the command agent; the
error said so and its processes were killed), "ran to its end", or "sandbox ended 3.4 s"
(gVisor out of memory, a pod whose code hunts its own killer: the error said so and a new
session worked). Every passed hostile test also means the next run worked, with the same
files, within 1 s, and no host process was left.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

BACKENDS = ("local", "docker", "podman", "docker+runsc", "kubernetes")
BATTERY = ("test_containment", "test_attacks", "test_hostile")
"""The modules of the attack battery; other tests in the report are left out."""
_PARAMS = re.compile(r"^(?P<name>[^\[]+)\[(?P<params>.*)\]$")


HOW_IT_ENDED = {
    "timeout": "stopped {s} s",
    "timeout, end confirmed late": "stopped {s} s, confirmed late",
    "error": "agent ended {s} s",
    "result": "ran to its end",
    "sandbox ended": "sandbox ended {s} s",
}
"""Cells of passed hostile-program tests, from the `outcome` they recorded."""


def outcome(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "FAILED"
    skipped = case.find("skipped")
    if skipped is None:
        recorded = {p.get("name"): p.get("value") for p in case.iter("property")}
        ended = HOW_IT_ENDED.get(recorded.get("outcome") or "")
        if ended:
            return ended.format(s=recorded.get("returned_s", "?"))
        return "contained"
    if skipped.get("type") == "pytest.xfail":
        return "known gap"
    return "skipped"


def split(name: str) -> tuple[str, str] | None:
    """(attack, backend) from a test id like `test_x[docker+runsc-ptrace]`."""
    match = _PARAMS.match(name)
    if not match:
        return None
    params = match["params"]
    for backend in sorted(BACKENDS, key=len, reverse=True):
        if params == backend or params.startswith(backend + "-"):
            rest = params[len(backend) + 1 :]
            attack = match["name"].removeprefix("test_")
            return (f"{attack} [{rest}]" if rest else attack), backend
    return None


def main(path: str) -> None:
    table: dict[str, dict[str, str]] = defaultdict(dict)
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.get("classname", "").rpartition(".")[2] not in BATTERY:
            continue
        parsed = split(case.get("name", ""))
        if parsed:
            attack, backend = parsed
            table[attack][backend] = outcome(case)
    present = [b for b in BACKENDS if any(b in row for row in table.values())]
    print("| attack | " + " | ".join(present) + " |")
    print("|---" * (len(present) + 1) + "|")
    for attack in sorted(table):
        cells = (table[attack].get(b, "n/a") for b in present)
        print(f"| {attack} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
