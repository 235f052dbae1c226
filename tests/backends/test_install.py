"""Installing libraries: real pip installs from PyPI with the network on only for the install.

A Kubernetes pod's network cannot be switched on for one command (a NetworkPolicy cuts the
whole pod), so there a session without network refuses to install and the install tests use
a session with network=True.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llm_sandbox import SandboxSession

SessionFactory = Callable[..., SandboxSession]


@pytest.fixture
def session(make_session: SessionFactory, backend: str) -> SandboxSession:
    return make_session(network=backend == "kubernetes")


def test_a_pod_without_network_refuses_to_install(
    make_session: SessionFactory, backend: str
) -> None:
    if backend != "kubernetes":
        pytest.skip("the other backends turn the network on for the install only")
    from llm_sandbox.exceptions import ConfigurationError

    offline = make_session()
    with pytest.raises(ConfigurationError, match="network=True"):
        offline.install(["six"])
    assert offline.run("print('still usable')").stdout == "still usable\n"


@pytest.mark.slow
def test_install_then_import_while_runs_stay_offline(session: SandboxSession, backend: str) -> None:
    session.install(["six==1.16.0"])
    result = session.run("import six; print(six.__version__)")
    assert result.stdout == "1.16.0\n"
    if backend == "kubernetes":
        pytest.skip("installed and imported; a Kubernetes session that installs has network")
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
