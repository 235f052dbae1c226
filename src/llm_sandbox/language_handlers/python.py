"""Python: runs the code as a script file with the sandbox's `python3`."""

from __future__ import annotations

import logging
import os
import sys

from llm_sandbox.backends.base import BAKED_LIBS_DIR, LIBS_DIR, RuntimeNeeds
from llm_sandbox.images.builder import image_for
from llm_sandbox.language_handlers.base import AbstractLanguageHandler, LanguageConfig

DEFAULT_IMAGE = image_for("python")


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

    def runtime_needs(self) -> RuntimeNeeds:
        prefix = host_python_prefix()
        paths = () if prefix.startswith("/usr") else (prefix,)
        return RuntimeNeeds(host_paths=paths, image=self.config.image, path_dirs=(f"{prefix}/bin",))
