"""Installing libraries: real pip installs from PyPI through the egress gate, which allows the
package index only (the sandbox never gets the network itself), on every backend (gVisor and
Kubernetes reach the gate through a relay: see `egress.relay`).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llm_sandbox import SandboxSession

SessionFactory = Callable[..., SandboxSession]


@pytest.fixture
def session(make_session: SessionFactory) -> SandboxSession:
    return make_session()


@pytest.mark.slow
def test_install_then_import_while_runs_stay_offline(session: SandboxSession) -> None:
    session.install(["six==1.16.0"])
    result = session.run("import six; print(six.__version__)")
    assert result.stdout == "1.16.0\n"
    log = session.network_log
    assert log
    assert {e.host for e in log} <= {"pypi.org", "files.pythonhosted.org"}
    assert {e.verdict for e in log} == {"allowed"}
    offline = session.run(
        "import socket\ntry:\n    socket.getaddrinfo('pypi.org', 443)\n    print('online')\n"
        "except OSError:\n    print('offline')"
    )
    assert offline.stdout == "offline\n"


@pytest.mark.slow
def test_run_with_libraries_argument(session: SandboxSession) -> None:
    result = session.run("import six; print('ok')", libraries=["six"])
    assert result.stdout == "ok\n"


@pytest.mark.slow
def test_failed_install_raises_with_output(session: SandboxSession) -> None:
    from llm_sandbox.exceptions import PackageInstallError

    with pytest.raises(PackageInstallError) as info:
        session.install(["this-package-does-not-exist-llm-sandbox-zz"])
    assert info.value.exit_code != 0
    assert info.value.stderr
