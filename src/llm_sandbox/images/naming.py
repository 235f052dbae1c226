"""The names of the default images: one pure function, importable without the builder.

Names are fully qualified: ``localhost/llm-sandbox/<language>:<IMAGE_VERSION>``. Podman stores a
short name such as ``llm-sandbox-python:1`` as ``localhost/llm-sandbox-python:1`` while Docker
stores it unchanged, so a short name would compare differently in the two engines (and in their
APIs' ``RepoTags``). With an explicit ``localhost/`` domain both engines store, list and look up the
very same string, and neither ever tries to pull it from Docker Hub. Bump :data:`IMAGE_VERSION`
whenever a recipe or the run-time set-up changes so stale local images are not reused.
"""

from __future__ import annotations

from typing import Final

IMAGE_REPOSITORY: Final = "localhost/llm-sandbox"
IMAGE_VERSION: Final = "1"


def image_name(lang: str) -> str:
    """The name of the default image we build for language ``lang``."""
    return f"{IMAGE_REPOSITORY}/{lang}:{IMAGE_VERSION}"
