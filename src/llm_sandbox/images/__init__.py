"""Default container images for llm_sandbox: per-language recipes and an engine-CLI builder.

``image_for(lang)`` names the image, ``image_exists(name, engine)`` checks for it and
``build_image(lang, engine)`` builds it -- from Debian packages when no container registry is
reachable, from the official language image otherwise. Each language's recipe is declared by its
handler; ``RECIPES`` and ``LANGUAGES`` are those of the built-in languages.

The builder is imported on first use only: language handlers import :mod:`.recipes` (the
``Recipe`` type) and :mod:`.naming` (``image_name``), and must not pull it in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from llm_sandbox.images.naming import image_name
from llm_sandbox.images.recipes import Recipe

if TYPE_CHECKING:
    from collections.abc import Mapping

    from llm_sandbox.images.builder import (
        ImageBuildError,
        build_image,
        debian_mirror,
        image_exists,
        image_for,
        image_up_to_date,
        rootfs_tarball,
    )

    LANGUAGES: tuple[str, ...]
    RECIPES: Mapping[str, Recipe]

__all__ = [
    "LANGUAGES",
    "RECIPES",
    "ImageBuildError",
    "Recipe",
    "build_image",
    "debian_mirror",
    "image_exists",
    "image_for",
    "image_name",
    "image_up_to_date",
    "rootfs_tarball",
]

_FROM_BUILDER = frozenset(
    {
        "ImageBuildError",
        "build_image",
        "debian_mirror",
        "image_exists",
        "image_for",
        "image_up_to_date",
        "rootfs_tarball",
    }
)


def __getattr__(name: str) -> object:
    if name not in {*_FROM_BUILDER, "LANGUAGES", "RECIPES"}:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    builder = importlib.import_module("llm_sandbox.images.builder")
    if name in _FROM_BUILDER:
        return getattr(builder, name)
    recipes = builder.builtin_recipes()
    return tuple(recipes) if name == "LANGUAGES" else recipes
