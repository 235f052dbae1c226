"""Python: runs the code as a script file with the sandbox's `python3`.

The security analysis reads Python on its syntax tree (`llm_sandbox.security.python_code`); the
syntax and import forms below are what it falls back to for code that does not parse.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping

from llm_sandbox.images.naming import image_name
from llm_sandbox.images.recipes import Recipe, stand_ins
from llm_sandbox.language_handlers.base import (
    CAPTURE_DIR,
    PEP508_SPEC,
    AbstractLanguageHandler,
    LanguageConfig,
    PlotCapture,
    PlotDetectionConfig,
    PlotLibrary,
    RuntimeNeeds,
)
from llm_sandbox.language_handlers.capture import support_file
from llm_sandbox.language_handlers.syntax import ImportForm, SourceRules, Syntax
from llm_sandbox.layout import BAKED_LIBS_DIR

DEFAULT_IMAGE = image_name("python")
CAPTURE_PATH = f"{CAPTURE_DIR}/python"
PLOTTING_MODULES = ("matplotlib", "seaborn", "PIL", "plotly")
#: The plotting libraries of the image, as Debian packages and (online build) from PyPI. PIL is
#: Pillow; plotly renders to HTML (no kaleido in Debian). numpy and pandas come with them.
PLOTTING_PACKAGES = ("python3-matplotlib", "python3-seaborn", "python3-plotly", "python3-pil")
PLOTTING_PYPI = ("matplotlib", "seaborn", "plotly", "pillow")
#: Dependencies Debian declares that the image never needs (see `stand_ins`).
STAND_INS = ("python3-pythran", "python3-sympy", "unicode-data", "python3-lxml")
_PROBE = (
    "import importlib.util as u, sys\n"
    "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))"
)


def host_python_prefix() -> str:
    """The installation the embedded backend mounts: the base interpreter of this process."""
    override = os.environ.get("LLM_SANDBOX_PYTHON_PREFIX")
    return os.path.realpath(override or sys.base_prefix)


class PythonHandler(AbstractLanguageHandler):
    aliases = ("py", "python3")
    source_rules = SourceRules(
        syntax=Syntax(("#",), quotes="\"'", triple=('"""', "'''")),
        imports=(
            ImportForm(re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import", re.MULTILINE)),
            ImportForm(
                re.compile(r"^[ \t]*import[ \t]+([\w.]+(?:[ \t]*,[ \t]*[\w.]+)*)", re.MULTILINE),
                entries=re.compile(r"[\w.]+"),
            ),
        ),
    )
    recipe = Recipe(
        language="python",
        # python-is-python3: `python` is python3, as in the official image.
        debian_packages=(
            "python3",
            "python-is-python3",
            "python3-pip",
            "python3-venv",
            # The interactive kernel's runner (llm_sandbox.kernels) runs on IPython.
            "python3-ipython",
            *PLOTTING_PACKAGES,
        ),
        online_base="docker.io/library/python:3.11-slim",
        optional_debian_packages=("python3-scipy",),
        pre_install_commands=stand_ins(*STAND_INS),
        online_commands=("pip install --no-cache-dir ipython " + " ".join(PLOTTING_PYPI),),
        # Debian marks its interpreter "externally managed" (PEP 668); the official image does
        # not. Let `pip install` (falling back to --user as uid 1000) work in both.
        env={"PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        commands=("python", "python3", "pip", "pip3"),
    )
    package_pattern = PEP508_SPEC
    package_rule = (
        "library name {name!r} is not a plain package name; use a name with an optional version "
        "constraint such as 'numpy' or 'pandas>=2.0' (options, URLs and shell syntax are not "
        "accepted)"
    )
    libraries_noun = "Python packages"
    package_index_hosts = ("pypi.org", "files.pythonhosted.org")
    package_index_env = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
    end_of_options = "--"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            name="python",
            file_extension="py",
            execution_commands=["python3 {file}"],
            package_manager=(
                "python3 -m pip install --target {libs} --no-cache-dir"
                " --disable-pip-version-check --no-input --progress-bar off"
            ),
            image=DEFAULT_IMAGE,
            plot_detection=PlotDetectionConfig(
                [PlotLibrary.MATPLOTLIB, PlotLibrary.PLOTLY, PlotLibrary.SEABORN]
            ),
        )

    # --- 0.3.x interface: its import regex and comment patterns (see `filter_comments`) --------
    def get_import_patterns(self, module: str) -> str:
        """Matches `import m`, `import m.sub`, `from m import`, `from m.sub import`."""
        name = re.escape(module)
        return rf"\s*(from\s+{name}(?:import|[\s.]|$)|import\s+{name}(?:[\s.]|$))"

    @staticmethod
    def get_multiline_comment_patterns() -> str:
        return r"'''[\s\S]*?'''"

    @staticmethod
    def get_inline_comment_patterns() -> str:
        return r"#.*$"

    def run_env(self, workdir: str) -> dict[str, str]:
        path = f"{workdir}:{self.libs_dir}:{BAKED_LIBS_DIR}/python"
        return {"PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}

    def plot_capture(self, run_env: Mapping[str, str]) -> PlotCapture:
        """`usercustomize.py` hooks matplotlib, PIL and plotly. Its directory goes first on
        PYTHONPATH (it holds nothing else), so no other `usercustomize` shadows it; it runs the
        next one on sys.path itself."""
        path = run_env.get("PYTHONPATH")
        return PlotCapture(
            files={f"{CAPTURE_PATH}/usercustomize.py": support_file("python_usercustomize.py")},
            env={"PYTHONPATH": f"{CAPTURE_PATH}:{path}" if path else CAPTURE_PATH},
            probe=["python3", "-c", _PROBE, *PLOTTING_MODULES],
        )

    def runtime_needs(self) -> RuntimeNeeds:
        prefix = host_python_prefix()
        paths = () if prefix.startswith("/usr") else (prefix,)
        return RuntimeNeeds(host_paths=paths, image=self.config.image, path_dirs=(f"{prefix}/bin",))


HANDLER = PythonHandler
