"""Installing libraries: real pip installs from PyPI with the network on only for the install."""

from __future__ import annotations

import pytest

from llm_sandbox import SandboxSession


@pytest.mark.slow
def test_install_then_import_while_runs_stay_offline(session: SandboxSession, backend: str) -> None:
    session.install(["six==1.16.0"])
    result = session.run("import six; print(six.__version__)")
    assert result.stdout == "1.16.0\n"
    if backend == "kubernetes":
        pytest.skip(
            "installed and imported; runs staying offline needs a NetworkPolicy (a Kubernetes "
            "pod always has the pod network; the emulator has none)"
        )
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
