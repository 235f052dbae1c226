"""Plots and files out of real runs, on every backend: decoded and checked, not just counted.

One session per (language, backend) for the whole module. Plotting libraries the sandbox lacks
(the embedded backend uses the host's) skip the plot tests locally and fail them under CI, whose
test command installs them.
"""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from llm_sandbox import ArtifactSandboxSession, ExecutionResult, PlotOutput
from support import IN_CI, open_or_skip

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _open(lang: str, backend: str, **options: Any) -> ArtifactSandboxSession:
    session = ArtifactSandboxSession(lang=lang, backend=backend, **options)
    return open_or_skip(session, f"{lang} on {backend}")


@pytest.fixture(scope="module")
def python(backend: str) -> Iterator[ArtifactSandboxSession]:
    session = _open("python", backend)
    yield session
    session.close()


@pytest.fixture(scope="module")
def r_session(backend: str) -> Iterator[ArtifactSandboxSession]:
    session = _open("r", backend)
    yield session
    session.close()


def _needs(session: ArtifactSandboxSession, *libraries: str) -> None:
    missing = sorted(set(libraries) & set(session.missing_plot_libraries))
    if missing:
        message = f"{', '.join(missing)} missing in the sandbox"
        if IN_CI:
            pytest.fail(f"{message} under CI (scripts/test.sh installs them)")
        pytest.skip(message)


def png_size(plot: PlotOutput) -> tuple[int, int]:
    """Width and height from the decoded PNG's IHDR chunk, after checking the signature."""
    data = base64.b64decode(plot.content_base64, validate=True)
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def svg_root(plot: PlotOutput) -> ET.Element:
    root = ET.fromstring(base64.b64decode(plot.content_base64, validate=True))
    assert root.tag.endswith("svg")
    return root


def _ok(result: ExecutionResult) -> ExecutionResult:
    assert result.exit_code == 0, result.stderr
    assert not result.warnings, result.warnings
    return result


# --- Python ---------------------------------------------------------------------------------


def test_spec_example_plt_show(python: ArtifactSandboxSession) -> None:
    _needs(python, "matplotlib")
    result = _ok(
        python.run(
            "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3), dpi=50)\n"
            "plt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n"
        )
    )
    assert [p.format for p in result.plots] == ["png"]
    assert png_size(result.plots[0]) == (200, 150)
    assert (result.plots[0].width, result.plots[0].height) == (200, 150)
    assert result.stdout == ""
    assert result.stderr == ""


def test_figures_left_open_are_captured_in_order(python: ArtifactSandboxSession) -> None:
    _needs(python, "matplotlib")
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.figure(figsize=(2, 1), dpi=50); plt.plot([1, 2])\n"
        "plt.figure(figsize=(1, 2), dpi=50); plt.plot([2, 1])\n"
        "print('done')\n"
    )
    result = _ok(python.run(code))
    assert result.stdout == "done\n"
    assert [png_size(p) for p in result.plots] == [(100, 50), (50, 100)]


def test_savefig_then_show_is_one_plot_in_the_saved_format(python: ArtifactSandboxSession) -> None:
    _needs(python, "matplotlib")
    code = (
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(3, 2))\nplt.plot([1, 3, 2])\n"
        "plt.savefig('chart.svg')\nplt.show()\n"
        "import os; print(os.path.getsize('chart.svg') > 0)\n"
    )
    result = _ok(python.run(code))
    assert result.stdout == "True\n"
    assert [p.format for p in result.plots] == ["svg"]
    root = svg_root(result.plots[0])
    assert root.get("width") == "216pt"
    assert (result.plots[0].width, result.plots[0].height) == (288, 192)


def test_a_figure_changed_after_savefig_is_captured_again(python: ArtifactSandboxSession) -> None:
    _needs(python, "matplotlib")
    code = (
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('a.png')\n"
        "plt.title('changed')\n"
    )
    result = _ok(python.run(code))
    assert [p.format for p in result.plots] == ["png", "png"]
    assert result.plots[0].content_base64 != result.plots[1].content_base64


def test_savefig_into_the_artifacts_dir_is_a_plot_not_a_duplicate(
    python: ArtifactSandboxSession,
) -> None:
    _needs(python, "matplotlib")
    code = (
        "import os\nimport matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2), dpi=40)\n"
        "plt.plot([1, 2])\n"
        "plt.savefig(os.path.join(os.environ['LLM_SANDBOX_ARTIFACTS_DIR'], 'out.png'))\n"
        "plt.show()\n"
    )
    result = _ok(python.run(code))
    assert [(p.name, png_size(p)) for p in result.plots] == [("out.png", (80, 80))]
    assert result.files == []


def test_seaborn_through_matplotlib(python: ArtifactSandboxSession) -> None:
    _needs(python, "matplotlib", "seaborn")
    code = (
        "import seaborn as sns\nimport matplotlib.pyplot as plt\n"
        "sns.histplot([1, 2, 2, 3, 3, 3])\nplt.show()\n"
    )
    result = _ok(python.run(code))
    assert len(result.plots) == 1
    assert png_size(result.plots[0]) == (640, 480)


def test_plotly_figure_comes_back_as_html(python: ArtifactSandboxSession) -> None:
    _needs(python, "plotly")
    code = "import plotly.graph_objects as go\ngo.Figure(go.Bar(x=[1, 2], y=[3, 1])).show()\n"
    result = _ok(python.run(code))
    assert [p.format for p in result.plots] == ["html"]
    page = base64.b64decode(result.plots[0].content_base64).decode()
    assert "<html>" in page
    assert "Plotly.newPlot" in page


def test_pil_images_shown_and_saved(python: ArtifactSandboxSession) -> None:
    _needs(python, "PIL")
    code = (
        "from PIL import Image\nImage.new('RGB', (30, 20), 'red').show()\n"
        "Image.new('L', (7, 9)).save('small.png')\n"
    )
    result = _ok(python.run(code))
    assert [png_size(p) for p in result.plots] == [(30, 20), (7, 9)]


def test_capture_leaves_output_tracebacks_and_exit_code_alone(
    python: ArtifactSandboxSession,
) -> None:
    _needs(python, "matplotlib")
    code = "import sys\nimport matplotlib.pyplot as plt\nplt.plot([1])\nprint('hi')\n1/0\n"
    result = python.run(code)
    assert result.stdout == "hi\n"
    assert result.exit_code == 1
    assert "line 5, in <module>" in result.stderr
    assert result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert len(result.plots) == 1  # the open figure is still saved at exit
    exited = python.run("import sys\nimport matplotlib.pyplot as plt\nplt.plot([1])\nsys.exit(3)")
    assert exited.exit_code == 3
    assert len(exited.plots) == 1


def test_plots_do_not_leak_into_the_next_run(python: ArtifactSandboxSession) -> None:
    _needs(python, "matplotlib")
    python.clear_plots()
    first = _ok(python.run("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"))
    second = _ok(python.run("print('no plot')"))
    assert len(first.plots) == 1
    assert second.plots == []
    assert python.plots == first.plots  # the session's history keeps them until cleared
    third = _ok(python.run("from PIL import Image\nImage.new('RGB', (5, 5)).show()"))
    assert python.plots == [*first.plots, *third.plots]
    fourth = _ok(python.run("print(1)", clear_plots=True))
    assert fourth.plots == []
    assert python.plots == []


def test_files_in_the_artifacts_dir_come_back(python: ArtifactSandboxSession) -> None:
    code = (
        "import os\nd = os.environ['LLM_SANDBOX_ARTIFACTS_DIR']\n"
        "open(os.path.join(d, 'table.csv'), 'w').write('a,b\\n1,2\\n')\n"
        "os.makedirs(os.path.join(d, 'sub'))\n"
        "open(os.path.join(d, 'sub', 'blob.bin'), 'wb').write(bytes(range(256)))\n"
        "os.symlink('/etc/passwd', os.path.join(d, 'link'))\n"
    )
    result = python.run(code)
    assert result.exit_code == 0, result.stderr
    files = {f.name: f for f in result.files}
    assert set(files) == {"table.csv", "sub/blob.bin"}
    assert files["table.csv"].content == b"a,b\n1,2\n"
    assert files["table.csv"].mime_type == "text/csv"
    assert files["sub/blob.bin"].content == bytes(range(256))
    assert files["sub/blob.bin"].mime_type == "application/octet-stream"
    assert result.dropped_artifacts == ["files/link: not a regular file"]
    assert result.artifacts_truncated


def test_artifact_cap_is_reported_not_silent(backend: str) -> None:
    session = _open("python", backend, max_artifact_bytes=1000, enable_plotting=False)
    try:
        code = (
            "import os\nd = os.environ['LLM_SANDBOX_ARTIFACTS_DIR']\n"
            "for name in ('a.txt', 'b.txt', 'c.txt'):\n"
            "    open(os.path.join(d, name), 'w').write('x' * 400)\n"
        )
        result = session.run(code)
        assert [f.name for f in result.files] == ["a.txt", "b.txt"]
        assert result.artifacts_truncated
        assert len(result.dropped_artifacts) == 1
        assert result.dropped_artifacts[0].startswith("files/c.txt: 400 bytes would exceed")
    finally:
        session.close()


def test_plotting_disabled_captures_no_figures_but_files(backend: str) -> None:
    session = _open("python", backend, enable_plotting=False)
    try:
        assert session.missing_plot_libraries == ()
        code = (
            "import os\nopen(os.environ['LLM_SANDBOX_ARTIFACTS_DIR'] + '/n.txt', 'w').write('1')\n"
            "try:\n    import matplotlib.pyplot as plt\nexcept ImportError:\n    pass\n"
            "else:\n    plt.plot([1])\n    plt.show()\n"
        )
        result = session.run(code)
        assert result.exit_code == 0, result.stderr
        assert result.plots == []
        assert [(f.name, f.content) for f in result.files] == [("n.txt", b"1")]
    finally:
        session.close()


# --- R, JavaScript, and a language without plotting hooks ----------------------------------------


def test_r_base_graphics_and_ggplot2(r_session: ArtifactSandboxSession) -> None:
    _needs(r_session, "ggplot2")
    code = (
        "plot(1:10)\nhist(c(1, 2, 2, 3))\nlibrary(ggplot2)\n"
        "ggplot(data.frame(a = 1:3, b = c(2, 5, 3)), aes(a, b)) + geom_point()\n"
        'cat("drawn\\n")\n'
    )
    result = _ok(r_session.run(code))
    assert result.stdout == "drawn\n"
    assert [png_size(p) for p in result.plots] == [(480, 480)] * 3


def test_r_plot_survives_an_error_and_next_run_is_clean(r_session: ArtifactSandboxSession) -> None:
    result = r_session.run('plot(1:3)\nstop("boom")\n')
    assert result.exit_code == 1
    assert "boom" in result.stderr
    assert [png_size(p) for p in result.plots] == [(480, 480)]
    assert r_session.run('cat("x\\n")').plots == []


def test_javascript_images_written_to_the_artifacts_dir(backend: str) -> None:
    session = _open("javascript", backend)
    try:
        code = (
            "const fs = require('fs'); const d = process.env.LLM_SANDBOX_ARTIFACTS_DIR;\n"
            "fs.writeFileSync(d + '/c.svg', '<svg xmlns=\"http://www.w3.org/2000/svg\" "
            'width="120" height="80"><rect width="10" height="10"/></svg>\');\n'
            "fs.writeFileSync(d + '/d.json', '{}');\n"
        )
        result = session.run(code)
        assert result.exit_code == 0, result.stderr
        assert [(p.name, p.format, p.width, p.height) for p in result.plots] == [
            ("c.svg", "svg", 120, 80)
        ]
        svg_root(result.plots[0])
        assert [(f.name, f.mime_type) for f in result.files] == [("d.json", "application/json")]
    finally:
        session.close()


def test_language_without_plot_hooks_runs_and_returns_no_plots(backend: str) -> None:
    session = _open("ruby", backend, enable_plotting=True)
    try:
        result = session.run('puts "hi"\nexit 3')
        assert (result.stdout, result.exit_code, result.plots, result.warnings) == (
            "hi\n",
            3,
            [],
            [],
        )
    finally:
        session.close()


def test_the_programs_own_usercustomize_still_runs(python: ArtifactSandboxSession) -> None:
    _needs(python, "matplotlib")
    python.run("open('usercustomize.py', 'w').write('import builtins; builtins.MARK = 42')")
    try:
        code = (
            "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "plt.plot([1])\nplt.show()\nplt.show()\nprint(MARK)\n"
        )
        result = _ok(python.run(code))
        assert result.stdout == "42\n"
        assert len(result.plots) == 1  # an explicit backend still shows; a second show adds none
    finally:
        python.run("import os; os.remove('usercustomize.py')")


def test_a_deleted_artifacts_dir_is_a_warning_not_a_failure(python: ArtifactSandboxSession) -> None:
    code = (
        "import os, shutil\n"
        "shutil.rmtree(os.path.dirname(os.environ['LLM_SANDBOX_ARTIFACTS_DIR']))\n"
        "print('ok')\n"
    )
    result = python.run(code)
    assert (result.exit_code, result.stdout) == (0, "ok\n")
    assert (result.plots, result.files) == ([], [])
    assert any("was gone after the run" in warning for warning in result.warnings)
    assert not any("was gone" in warning for warning in python.run("print(2)").warnings)
