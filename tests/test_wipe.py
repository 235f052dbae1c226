"""The wipe's report, parsed (pure): problems, facts, and a fingerprint of the facts only."""

from __future__ import annotations

from llm_sandbox.backends.wipe import parse_report, wipe_script
from llm_sandbox.layout import LIBS_DIR

CLEAN = (
    b"mount /tmp tmpfs\nmount /sandbox tmpfs\nipc /proc/sysvipc/shm 1\nlibs 1 2\nuid 1000\nwiped\n"
)


def test_a_clean_report() -> None:
    report = parse_report(0, CLEAN)
    assert report.clean
    assert report.facts[0] == "mount /tmp tmpfs"
    assert "wiped" not in report.facts


def test_problems_are_not_facts_and_do_not_change_the_fingerprint() -> None:
    clean = parse_report(0, CLEAN)
    dirty = parse_report(0, b"survivor 42\nleft /tmp/x\n" + CLEAN)
    assert dirty.problems == ("survivor 42", "left /tmp/x")
    assert not dirty.clean
    assert dirty.fingerprint == clean.fingerprint


def test_a_different_fact_changes_the_fingerprint() -> None:
    other = parse_report(0, CLEAN.replace(b"libs 1 2", b"libs 3 4"))
    assert other.fingerprint != parse_report(0, CLEAN).fingerprint


def test_a_wipe_that_did_not_finish_is_a_problem() -> None:
    report = parse_report(137, b"mount /tmp tmpfs\n")
    assert report.problems == ("the wipe did not finish (exit code 137)",)


def test_the_script_spares_the_given_pids_and_keeps_the_libraries() -> None:
    script = wipe_script([7, 9])
    assert 'spare="7 9"' in script
    assert f"libs={LIBS_DIR}" in script
    assert "rwroot" in script
