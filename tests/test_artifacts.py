"""The pure half of artifact capture: run layout, sorting a run's tar into plots and files,
image headers, and what each language handler contributes."""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from llm_sandbox import ArtifactSandboxSession, SandboxSession, archive, artifacts, plot_formats
from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory


def png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(header))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def tar_of(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def test_collect_sorts_plots_first_then_files_and_images_become_plots() -> None:
    data = tar_of(
        {
            "4/files/report.txt": b"text",
            "4/files/chart.png": png(10, 20),
            "4/plots/0002-7.svg": b'<svg width="3in" height="2in"/>',
            "4/plots/0001-7.png": png(640, 480),
            "4/plots/_errors.txt": b"savefig: OSError: disk full\n",
        }
    )
    collected = artifacts.collect(data, budget=10_000)
    assert [(p.format, p.width, p.height, p.name) for p in collected.plots] == [
        ("png", 640, 480, None),
        ("svg", 288, 192, None),
        ("png", 10, 20, "chart.png"),
    ]
    assert [(f.name, f.mime_type, f.content) for f in collected.files] == [
        ("report.txt", "text/plain", b"text")
    ]
    assert collected.warnings == ["plot capture: savefig: OSError: disk full"]
    assert not collected.truncated
    assert base64.b64decode(collected.plots[0].content_base64) == png(640, 480)


def test_collect_keeps_what_fits_and_names_the_rest() -> None:
    data = tar_of(
        {"1/plots/0001-1.png": png(1, 1), "1/files/a.bin": b"a" * 40, "1/files/b.bin": b"b" * 40},
        symlinks={"1/files/link": "/etc/passwd"},
    )
    collected = artifacts.collect(data, budget=len(png(1, 1)) + 50)
    assert len(collected.plots) == 1
    assert [f.name for f in collected.files] == ["a.bin"]
    assert collected.truncated
    assert collected.dropped == [
        "files/link: not a regular file",
        f"files/b.bin: 40 bytes would exceed the {len(png(1, 1)) + 50}-byte limit",
    ]


def test_read_files_never_returns_an_escaping_name() -> None:
    data = tar_of({"top/../../evil": b"x", "top/ok": b"y"})
    found = archive.read_files(data, budget=100)
    assert [(f.path, f.content) for f in found.files] == [("top/ok", b"y")]
    assert len(found.skipped) == 1
    assert "'..'" in found.skipped[0][1]


def test_wrapper_prepares_the_directory_and_becomes_the_program(tmp_path: Path) -> None:
    layout = artifacts.RunLayout.for_run(3)
    assert layout.env() == {
        "LLM_SANDBOX_ARTIFACTS_DIR": f"{artifacts.ARTIFACTS_ROOT}/3/files",
        "LLM_SANDBOX_PLOTS_DIR": f"{artifacts.ARTIFACTS_ROOT}/3/plots",
    }
    root = tmp_path / "root"
    (root / "2" / "files").mkdir(parents=True)  # an earlier run's, removed
    argv = layout.wrap(["sh", "-c", 'ls "$0"; exec ls "$1"', str(root / "3"), str(root)])
    argv[2] = argv[2].replace(artifacts.ARTIFACTS_ROOT, str(root))
    argv[3] = str(root / "3")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "files\nplots\n3\n", "")
    failing = subprocess.run([*argv[:4], "sh", "-c", "exit 7"], check=False)
    assert failing.returncode == 7


@pytest.mark.parametrize(
    ("name", "fmt", "mime"),
    [
        ("a.PNG", "png", "image/png"),
        ("b.jpg", "jpeg", "image/jpeg"),
        ("c.svg", "svg", "image/svg+xml"),
        ("d.html", "html", "text/html"),
        ("e.json", None, "application/json"),
        ("f", None, "application/octet-stream"),
    ],
)
def test_formats_and_mime_types(name: str, fmt: str | None, mime: str) -> None:
    assert plot_formats.format_of(name) == fmt
    assert plot_formats.mime_type(name) == mime


def test_dimensions_from_headers() -> None:
    assert plot_formats.dimensions("png", png(3, 4)) == (3, 4)
    assert plot_formats.dimensions("gif", b"GIF89a" + struct.pack("<HH", 5, 6)) == (5, 6)
    jpeg = b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHH", 11, 8, 9, 12) + b"\x03" * 8
    assert plot_formats.dimensions("jpeg", jpeg) == (12, 9)
    assert plot_formats.dimensions("svg", b'<svg viewBox="0 0 30 40"/>') == (30, 40)
    assert plot_formats.dimensions("svg", b'<svg width="10pt" height="100%"/>') == (None, None)
    assert plot_formats.dimensions("png", b"not a png") == (None, None)
    assert plot_formats.dimensions("pdf", b"%PDF") == (None, None)


def test_plot_hooks_are_a_handler_capability() -> None:
    python = LanguageHandlerFactory.create_handler("python")
    capture = python.plot_capture({"PYTHONPATH": "/sandbox"})
    assert capture is not None
    assert capture.env["PYTHONPATH"].endswith(":/sandbox")
    [(path, content)] = capture.files.items()
    assert path.endswith("/usercustomize.py")
    compile(content, path, "exec")
    r = LanguageHandlerFactory.create_handler("r")
    r_capture = r.plot_capture({})
    assert r_capture is not None
    assert set(r_capture.env) == {"R_PROFILE_USER"}
    for language in ("javascript", "java", "cpp", "go", "ruby"):
        assert LanguageHandlerFactory.create_handler(language).plot_capture({}) is None


def test_artifact_session_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="enable_plotting"):
        ArtifactSandboxSession(enable_plotting="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_artifact_bytes"):
        ArtifactSandboxSession(max_artifact_bytes="lots")
    with pytest.raises(ConfigurationError, match="unknown option"):
        ArtifactSandboxSession(enable_ploting=True)  # type: ignore[call-arg]
    assert ArtifactSandboxSession(max_artifact_bytes="2m").max_artifact_bytes == 2 * 1024 * 1024
    with pytest.raises(ConfigurationError, match="use it instead of SandboxSession"):
        SandboxSession(enable_plotting=True)  # type: ignore[call-arg]
