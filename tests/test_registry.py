"""The backend registry: names, aliases, third-party backends, lazy loading, no I/O before open."""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import llm_sandbox
from fake_backend import FakeBackend
from llm_sandbox import SandboxBackend, SandboxSession, compat_options
from llm_sandbox.backends import (
    BackendCapabilities,
    BackendDefinition,
    get_backend,
    list_backends,
    register_backend,
)
from llm_sandbox.backends.registry import configure, unregister_backend
from llm_sandbox.config import BackendOptions, SessionConfig
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    UnsupportedBackendError,
)
from llm_sandbox.options import SessionOptions
from llm_sandbox.security import SecurityPolicy


def test_builtin_backends_in_order_with_capabilities() -> None:
    names = [d.name for d in list_backends()[:4]]
    assert names == ["local", "docker", "podman", "kubernetes"]
    for definition in list_backends()[:4]:
        assert definition.builtin
        assert isinstance(definition.capabilities, BackendCapabilities)
    assert get_backend("docker").capabilities.daemon_required
    assert not get_backend("local").capabilities.daemon_required
    assert get_backend("local").capabilities.platforms == ("linux",)
    assert get_backend("kubernetes").extra == "kubernetes"


def test_public_names_of_the_registry() -> None:
    for name in ("register_backend", "get_backend", "list_backends", "BackendCapabilities"):
        assert getattr(llm_sandbox, name) is getattr(llm_sandbox.backends, name)


def test_previous_generation_name_bubblewrap_is_the_embedded_backend() -> None:
    assert get_backend("bubblewrap") is get_backend("local")
    assert get_backend(SandboxBackend.LOCAL).name == "local"
    assert SandboxSession(backend="bubblewrap").config.backend is SandboxBackend.LOCAL


def test_unknown_backend_is_our_error_naming_the_choices() -> None:
    with pytest.raises(UnsupportedBackendError, match="'local', 'docker', 'podman'"):
        get_backend("lxc")
    assert issubclass(UnsupportedBackendError, ConfigurationError)
    with pytest.raises(UnsupportedBackendError):
        SandboxSession(backend=42)  # type: ignore[arg-type]


def test_registration_rules() -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        register_backend("docker", FakeBackend)
    with pytest.raises(ConfigurationError, match="already registered"):
        register_backend("bubblewrap", FakeBackend)
    for bad in ("", "1abc", "has space", "a/b"):
        with pytest.raises(ConfigurationError, match="must start with a letter"):
            register_backend(bad, FakeBackend)
    with pytest.raises(ConfigurationError, match="callable"):
        register_backend("notcallable", 3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cannot be removed"):
        unregister_backend("local")


@dataclass(frozen=True)
class _MyOptions(BackendOptions):
    flavour: str = "plain"


@pytest.fixture
def third_party() -> Iterator[BackendDefinition]:
    definition = register_backend(
        "thirdparty",
        FakeBackend,
        capabilities=BackendCapabilities(filesystem_isolation=True),
        options=_MyOptions,
    )
    yield definition
    unregister_backend("thirdparty")


def test_a_third_party_backend_registers_and_runs(third_party: BackendDefinition) -> None:
    assert get_backend("THIRDPARTY") is third_party
    assert third_party in list_backends()
    assert not third_party.builtin
    with SandboxSession(backend="thirdparty", flavour="spicy") as session:  # type: ignore[call-arg]
        assert session.run("out works\nexit 2").exit_code == 2
        assert session.config.options(_MyOptions).flavour == "spicy"
        assert session.config.backend == "thirdparty"


def test_options_of_another_backend_are_rejected_by_the_options_class(
    third_party: BackendDefinition,
) -> None:
    with pytest.raises(ConfigurationError, match="'image' does not apply to the thirdparty"):
        SandboxSession(backend="thirdparty", image="python:3.11")
    with pytest.raises(ConfigurationError, match="'flavour' does not apply to the local backend"):
        SandboxSession(backend="local", flavour="x")  # type: ignore[call-arg]


def test_a_factory_that_returns_no_backend_is_refused() -> None:
    register_backend("broken", object)  # type: ignore[arg-type]
    try:
        with pytest.raises(ConfigurationError, match=r"not a llm_sandbox\.backends\.base\.Backend"):
            SandboxSession(backend="broken").open()
    finally:
        unregister_backend("broken")


def test_no_io_before_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choosing between engines pings them, but only when the session opens."""
    calls: list[str] = []
    for engine in ("docker", "podman"):
        module = pytest.importorskip(f"llm_sandbox.backends.container.{engine}")

        def unreachable(engine: str = engine) -> bool:
            calls.append(engine)
            return False

        monkeypatch.setattr(module, "engine_reachable", unreachable)
    monkeypatch.delenv("LLM_SANDBOX_BACKEND", raising=False)
    session = SandboxSession(image="python:3.11-slim")
    assert session.config.backend is None
    assert session.config.candidates == ("docker", "podman")
    assert calls == []
    with pytest.raises(BackendUnavailableError, match="none is reachable"):
        session.open()
    assert calls == ["docker", "podman"]


def test_automatic_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_SANDBOX_BACKEND", raising=False)
    assert configure({}).backend is SandboxBackend.LOCAL
    assert configure({"image": "x"}).candidates == ("docker", "podman")
    assert configure({"keep_template": True}).candidates == ("docker", "podman")
    assert configure({"kube_namespace": "ns"}).backend is SandboxBackend.KUBERNETES
    # image= is understood by kubernetes too: with a kubernetes-only option, kubernetes wins
    both = configure({"image": "x", "pod_manifest": {"kind": "Pod"}})
    assert both.backend is SandboxBackend.KUBERNETES
    with pytest.raises(ConfigurationError, match="'kube_namespace' does not apply to the docker"):
        configure({"dockerfile": "Dockerfile", "kube_namespace": "ns"})


def test_a_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    for module in [m for m in sys.modules if m.startswith("llm_sandbox.backends.kubernetes.")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'llm-sandbox\[kubernetes\]'"):
        SandboxSession(backend="kubernetes").open()


# --- options are declared once --------------------------------------------------------------
def _members(annotation: object) -> set[object]:
    if typing.get_origin(annotation) in (typing.Union, type(int | None)):
        return set(typing.get_args(annotation))
    return {annotation}


def test_session_options_match_their_declarations() -> None:
    """`SessionOptions` (for type checkers) restates exactly the dataclass fields."""
    names_in_annotations = {"SecurityPolicy": SecurityPolicy}
    declared: dict[str, object] = {}
    owners: list[tuple[type, tuple[str, ...]]] = [(SessionConfig, SessionConfig.COMMON)]
    owners += [(d.options, d.options.option_names()) for d in list_backends() if d.builtin]
    for owner, names in owners:
        hints = typing.get_type_hints(owner, localns=names_in_annotations)
        for name in names:
            declared.setdefault(name, hints[name])
    del declared["lang"]  # the positional parameter
    typed = typing.get_type_hints(SessionOptions, localns=names_in_annotations)
    for spelling in compat_options.SPELLINGS:  # the previous generation's names, translated
        del typed[spelling]
    assert set(typed) == set(declared)
    for name, annotation in declared.items():
        extra = _members(typed[name]) - _members(annotation)
        assert extra <= {type(None)}, f"{name}: {typed[name]} vs {annotation}"
        assert _members(annotation) <= _members(typed[name]), name


def test_defaults_live_in_the_dataclasses() -> None:
    config = configure({})
    for item in dataclasses.fields(SessionConfig):
        if item.name in SessionConfig.COMMON:
            assert getattr(config, item.name) == SessionConfig.default(item.name)
