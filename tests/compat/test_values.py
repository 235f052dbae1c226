"""Enums, results and errors behave as the previous generation's (written from its docs)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from llm_sandbox import exceptions as errors
from llm_sandbox.const import DefaultImage, SandboxBackend, StrEnum, SupportedLanguage
from llm_sandbox.data import ConsoleOutput, ExecutionResult, FileType, PlotOutput


# --- enums ------------------------------------------------------------------------------------
def test_string_enums_compare_print_and_look_up_like_strings() -> None:
    assert SandboxBackend.DOCKER == "docker"  # type: ignore[comparison-overlap]
    assert str(SupportedLanguage.PYTHON) == "python"
    assert f"{SandboxBackend.PODMAN}" == "podman"
    assert SandboxBackend("DOCKER") is SandboxBackend.DOCKER
    assert SupportedLanguage("Python") is SupportedLanguage.PYTHON
    assert json.dumps(SupportedLanguage.R) == '"r"'
    assert issubclass(SandboxBackend, StrEnum)
    with pytest.raises(ValueError, match="k8s"):
        SandboxBackend("k8s")


def test_backend_members_of_the_previous_generation() -> None:
    for name in ("DOCKER", "KUBERNETES", "PODMAN", "MICROMAMBA", "BUBBLEWRAP", "NSJAIL"):
        assert hasattr(SandboxBackend, name)
    assert [lang.value for lang in SupportedLanguage] == [
        "python",
        "java",
        "javascript",
        "cpp",
        "go",
        "ruby",
        "r",
    ]
    for lang in SupportedLanguage:
        assert isinstance(getattr(DefaultImage, lang.name), str)


def test_file_type_compares_with_its_string() -> None:
    plot = PlotOutput(FileType.PNG, "aGk=")
    assert plot.format == "png"
    assert plot.format.value == "png"
    assert plot.format is FileType.PNG
    assert PlotOutput(format="svg", content_base64="").format is FileType.SVG  # type: ignore[arg-type]
    assert {m.value for m in FileType} >= {
        "png",
        "jpeg",
        "pdf",
        "svg",
        "csv",
        "json",
        "txt",
        "html",
    }


# --- results ----------------------------------------------------------------------------------
def test_console_output_positional_order_is_exit_code_stderr_stdout() -> None:
    out = ConsoleOutput(1, "err", "out")
    assert (out.exit_code, out.stderr, out.stdout) == (1, "err", "out")
    assert not out.success()
    assert ConsoleOutput(0, "", "ok").success()
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.exit_code = 2  # type: ignore[misc]


def test_text_is_a_deprecated_method() -> None:
    with pytest.warns(DeprecationWarning, match="stdout"):
        assert ConsoleOutput(0, "", "hello").text() == "hello"


def test_execution_result_takes_plots_fourth() -> None:
    plot = PlotOutput(FileType.PNG, "aGk=", 10, 20, 72)
    result = ExecutionResult(0, "", "out", [plot])
    assert result.plots == [plot]
    assert (plot.width, plot.height, plot.dpi) == (10, 20, 72)
    assert isinstance(result, ConsoleOutput)


def test_to_json() -> None:
    assert json.loads(ConsoleOutput(0, "", "hi").to_json())["stdout"] == "hi"
    result = ExecutionResult(0, "", "out", [PlotOutput(FileType.PNG, "aGk=")])
    assert "plots" not in json.loads(result.to_json())
    plots = json.loads(result.to_json(include_plots=True))["plots"]
    assert plots[0]["format"] == "png"
    assert plots[0]["content_base64"] == "aGk="


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "text"),
    [
        (errors.LanguageNotSupportedError("cobol"), "Language cobol is not supported"),
        (errors.UnsupportedBackendError("lxc"), "Unsupported backend: lxc"),
        (errors.NotOpenSessionError(), "not open"),
        (errors.CommandEmptyError(), "Command cannot be empty"),
        (errors.CommandFailedError("ls", 2, "boom"), "Command ls failed with exit code 2:\nboom"),
        (errors.PackageManagerError("pip"), "Package manager pip not found"),
        (errors.LanguageNotSupportPlotError("go"), "Language go does not support plot detection"),
        (errors.InvalidRegexPatternError("("), "Invalid regex pattern: ("),
        (errors.LibraryInstallationNotSupportedError("cpp"), "not supported for cpp"),
        (errors.LanguageHandlerNotInitializedError("go"), "Language handler for go"),
        (errors.MissingDependencyError("install docker"), "install docker"),
    ],
)
def test_error_constructors_and_messages(error: errors.SandboxError, text: str) -> None:
    assert text in str(error)
    assert isinstance(error, errors.SandboxError)


def test_errors_sit_in_our_tree_where_their_meaning_fits() -> None:
    assert issubclass(errors.ConfigurationError, errors.ValidationError)
    assert issubclass(errors.ExtraArgumentsError, errors.ConfigurationError)
    assert issubclass(errors.SecurityViolationError, errors.SecurityError)
    assert issubclass(errors.UnsafeArchiveError, errors.SecurityError)
    assert issubclass(errors.PodStartError, errors.ContainerError)
    assert issubclass(errors.NotOpenSessionError, errors.SessionStateError)
    assert issubclass(errors.PackageInstallError, errors.CommandFailedError)
    assert issubclass(errors.MissingDependencyError, errors.BackendUnavailableError)
    timeout = errors.SandboxTimeoutError("slow", 2.5)
    assert timeout.timeout_duration == timeout.timeout == 2.5
    failed = errors.CommandFailedError("pip install x", 1, "no such package")
    assert (failed.command, failed.exit_code, failed.output) == (
        "pip install x",
        1,
        "no such package",
    )
