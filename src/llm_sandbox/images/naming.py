"""Image names: our default images' (importable without the builder), and a name's registry.

Names are fully qualified: ``localhost/llm-sandbox/<language>:<IMAGE_VERSION>``. Podman stores a
short name such as ``llm-sandbox-python:1`` as ``localhost/llm-sandbox-python:1`` while Docker
stores it unchanged, so a short name would compare differently in the two engines (and in their
APIs' ``RepoTags``). With an explicit ``localhost/`` domain both engines store, list and look up the
very same string, and neither ever tries to pull it from Docker Hub (a session builds a missing
one instead). An image records the hash of the recipe it was built from: after a recipe change,
``llm-sandbox images build --if-missing`` rebuilds it and sessions warn that it is older. Bump
:data:`IMAGE_VERSION` when the run-time set-up changes so that older images would break sessions.
"""

from __future__ import annotations

from typing import Final

IMAGE_REPOSITORY: Final = "localhost/llm-sandbox"
IMAGE_VERSION: Final = "1"
DEFAULT_REGISTRY: Final = "docker.io"
"""Where a name without a registry host comes from (as Docker reads it)."""


def image_name(lang: str) -> str:
    """The name of the default image we build for language ``lang``."""
    return f"{IMAGE_REPOSITORY}/{lang}:{IMAGE_VERSION}"


def registry_of(reference: str) -> str:
    """The registry an image name is pulled from, by Docker's rule: the first path component
    when it looks like a host (has a ``.`` or a ``:``, or is ``localhost``), else docker.io.

    ``registry_of("python:3.11-slim") == "docker.io"``,
    ``registry_of("localhost:5000/team/python:1") == "localhost:5000"``.
    """
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


def default_image_language(image: str) -> str | None:
    """The language whose default image ``image`` names (the inverse of :func:`image_name`)."""
    prefix, suffix = f"{IMAGE_REPOSITORY}/", f":{IMAGE_VERSION}"
    if not (image.startswith(prefix) and image.endswith(suffix)):
        return None
    lang = image[len(prefix) : -len(suffix)]
    return lang if lang and "/" not in lang and ":" not in lang else None
