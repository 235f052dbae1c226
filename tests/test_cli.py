"""The `llm-sandbox` command end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "llm_sandbox"]


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def test_run_passes_output_and_exit_status_through() -> None:
    done = run_cli("run", "-c", "import sys; print('out'); print('err', file=sys.stderr); exit(4)")
    assert done.stdout == "out\n"
    assert "err" in done.stderr
    assert done.returncode == 4


def test_run_reads_code_from_stdin_and_file(tmp_path: pytest.TempPathFactory) -> None:
    assert run_cli("run", "-", stdin="print(6*7)").stdout == "42\n"
    script = tmp_path / "s.py"  # type: ignore[operator]
    script.write_text("print('from file')")
    assert run_cli("run", "--lang", "python", "--backend", "local", str(script)).stdout == (
        "from file\n"
    )


def test_timeout_exits_124_with_a_message() -> None:
    done = run_cli("run", "--timeout", "1", "-c", "while True: pass")
    assert done.returncode == 124
    assert "timed out" in done.stderr


def test_configuration_error_is_reported() -> None:
    done = run_cli("run", "--lang", "cobol", "-c", "x")
    assert done.returncode == 125
    assert "not supported" in done.stderr


def test_doctor_reports_local_controls_as_json() -> None:
    done = run_cli("doctor", "--json")
    assert done.returncode == 0, done.stderr
    reports = {r["backend"]: r for r in json.loads(done.stdout)}
    local = reports["local"]
    assert local["usable"]
    for control in ("non_root_user", "capabilities_dropped", "seccomp_filter", "network_isolated"):
        assert local["controls"][control] is True


def test_allow_runs_behind_the_egress_gate() -> None:
    """A host outside the allow list is refused by the gate before it is even resolved."""
    code = (
        "import urllib.request\ntry:\n"
        "    urllib.request.urlopen('http://elsewhere.invalid/', timeout=5)\n"
        "except Exception as exc:\n    print(exc)"
    )
    done = run_cli("run", "--backend", "local", "--allow", "api.example.com", "-c", code)
    assert done.stdout == "HTTP Error 403: Forbidden by llm-sandbox egress policy\n"
    bad = run_cli("run", "--allow", "not a host", "-c", "pass")
    assert bad.returncode != 0
    assert "not a valid host name" in bad.stderr
