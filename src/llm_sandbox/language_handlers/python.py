"""Python: runs the code as a script file with the sandbox's `python3`."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from llm_sandbox.backends.base import RuntimeNeeds
from llm_sandbox.images.builder import image_for
from llm_sandbox.language_handlers.base import (
    CAPTURE_DIR,
    AbstractLanguageHandler,
    LanguageConfig,
    PlotCapture,
)
from llm_sandbox.language_handlers.capture import support_file
from llm_sandbox.layout import BAKED_LIBS_DIR, LIBS_DIR

DEFAULT_IMAGE = image_for("python")
CAPTURE_PATH = f"{CAPTURE_DIR}/python"
PLOTTING_MODULES = ("matplotlib", "seaborn", "PIL", "plotly")
_PROBE = (
    "import importlib.util as u, sys\n"
    "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))"
)


def host_python_prefix() -> str:
    """The installation the embedded backend mounts: the base interpreter of this process."""
    override = os.environ.get("LLM_SANDBOX_PYTHON_PREFIX")
    return os.path.realpath(override or sys.base_prefix)


class PythonHandler(AbstractLanguageHandler):
    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            name="python",
            file_extension="py",
            execution_commands=["python3 {file}"],
            package_manager=(
                f"python3 -m pip install --target {LIBS_DIR}/python --no-cache-dir"
                " --disable-pip-version-check --no-input --progress-bar off"
            ),
            image=DEFAULT_IMAGE,
        )

    def get_import_patterns(self, module: str) -> str:
        return rf"^\s*(?:import\s+{module}\b|from\s+{module}\b)"

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
