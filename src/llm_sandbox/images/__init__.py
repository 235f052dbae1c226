"""Default container images for llm_sandbox: per-language recipes and an engine-CLI builder.

``image_for(lang)`` names the image, ``image_exists(name, engine)`` checks for it and
``build_image(lang, engine)`` builds it -- from Debian packages when no container registry is
reachable, from the official language image otherwise.
"""

from llm_sandbox.images.builder import (
    ImageBuildError,
    build_image,
    debian_mirror,
    image_exists,
    image_for,
    image_up_to_date,
    rootfs_tarball,
)
from llm_sandbox.images.recipes import LANGUAGES, RECIPES, Recipe

__all__ = [
    "LANGUAGES",
    "RECIPES",
    "ImageBuildError",
    "Recipe",
    "build_image",
    "debian_mirror",
    "image_exists",
    "image_for",
    "image_up_to_date",
    "rootfs_tarball",
]
