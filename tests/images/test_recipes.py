"""Pure checks of the image recipes: complete, well-formed, consistent."""

from __future__ import annotations

import re

import pytest

from llm_sandbox.images import LANGUAGES, RECIPES, image_for
from llm_sandbox.images.naming import IMAGE_REPOSITORY
from llm_sandbox.images.recipes import (
    DEFAULT_COMMAND,
    SANDBOX_GID,
    SANDBOX_HOME,
    SANDBOX_UID,
    SETUP_COMMANDS,
)
from llm_sandbox.language_handlers import python, r

EXPECTED_LANGUAGES = {"python", "javascript", "java", "cpp", "go", "ruby", "r"}

# Docker's reference grammar (distribution/reference), restricted to name:tag.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*)(?::[0-9]+)?"
REFERENCE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*:[\w][\w.-]{{0,127}}$")
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def test_every_language_has_a_recipe() -> None:
    assert set(RECIPES) == EXPECTED_LANGUAGES
    assert set(LANGUAGES) == EXPECTED_LANGUAGES
    for language, recipe in RECIPES.items():
        assert recipe.language == language


@pytest.mark.parametrize("language", sorted(EXPECTED_LANGUAGES))
def test_image_name_is_a_fully_qualified_reference(language: str) -> None:
    name = image_for(language)
    assert REFERENCE.match(name), name
    # An explicit localhost/ domain: Docker and Podman store and list the very same string.
    assert name.startswith(f"{IMAGE_REPOSITORY}/{language}:")
    assert name.startswith("localhost/")


def test_image_names_are_distinct() -> None:
    names = [image_for(language) for language in LANGUAGES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("language", sorted(EXPECTED_LANGUAGES))
def test_package_lists_are_non_empty_debian_names(language: str) -> None:
    recipe = RECIPES[language]
    assert recipe.debian_packages
    packages = recipe.all_debian_packages
    assert "ca-certificates" in packages
    assert len(set(packages)) == len(packages)
    for package in (*packages, *recipe.optional_debian_packages):
        assert DEBIAN_PACKAGE.match(package), package


@pytest.mark.parametrize("language", sorted(EXPECTED_LANGUAGES))
def test_online_base_is_a_fully_qualified_official_image(language: str) -> None:
    base = RECIPES[language].online_base
    # Fully qualified so Podman never has to resolve a short name.
    assert base.startswith("docker.io/library/")
    assert REFERENCE.match(base), base


def test_online_images_keep_their_own_path() -> None:
    for recipe in RECIPES.values():
        assert "PATH" not in recipe.image_env(from_rootfs=False)
        assert recipe.image_env(from_rootfs=True)["PATH"].startswith("/usr/local/sbin:")
        assert recipe.image_env(from_rootfs=True)["LANG"] == "C.UTF-8"


def test_unknown_language_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        image_for("cobol")


def test_run_time_set_up_creates_the_sandbox_user() -> None:
    script = "\n".join(SETUP_COMMANDS)
    assert (SANDBOX_UID, SANDBOX_GID, SANDBOX_HOME) == (1000, 1000, "/sandbox")
    assert f"useradd -u {SANDBOX_UID} -g {SANDBOX_GID} -d {SANDBOX_HOME}" in script
    assert f"chown {SANDBOX_UID}:{SANDBOX_GID} {SANDBOX_HOME}" in script
    assert "chmod 1777 /tmp" in script
    assert DEFAULT_COMMAND[0].startswith("/")


def test_go_never_needs_a_c_compiler_or_a_toolchain_download() -> None:
    env = RECIPES["go"].image_env(from_rootfs=True)
    assert env["GOTOOLCHAIN"] == "local"
    assert env["CGO_ENABLED"] == "0"  # the offline image has no gcc; net needs cgo otherwise
    # ...and the standard library is precompiled that way, so builds need not redo it.
    assert any("CGO_ENABLED=0" in command and "install std" in command
               for command in RECIPES["go"].rootfs_commands)  # fmt: skip


def test_python_and_r_images_carry_the_plotting_libraries() -> None:
    assert set(python.PLOTTING_PACKAGES) <= set(RECIPES["python"].debian_packages)
    assert set(r.PLOTTING_PACKAGES) <= set(RECIPES["r"].debian_packages)
    assert any("matplotlib" in c for c in RECIPES["python"].online_commands)
    assert any("r-cran-ggplot2" in c for c in RECIPES["r"].online_commands)


def test_stand_ins_are_empty_packages_installed_before_the_recipe() -> None:
    from llm_sandbox.images.recipes import stand_ins

    script = "\n".join(RECIPES["python"].pre_install_commands)
    assert script == "\n".join(stand_ins(*python.STAND_INS))
    for package in python.STAND_INS:
        assert DEBIAN_PACKAGE.match(package)
        assert f"Package: {package}'" in script
        assert f'dpkg -i "$d/{package}.deb"' in script
    assert not set(python.STAND_INS) & set(RECIPES["python"].all_debian_packages)


# The command names code written for the previous generation calls (`execute_command(...)`).
USUAL_COMMANDS = {
    "python": {"python", "python3", "pip", "pip3"},
    "javascript": {"node", "nodejs", "npm"},
    "java": {"java", "javac"},
    "cpp": {"g++", "gcc", "c++"},
    "go": {"go"},
    "ruby": {"ruby", "gem"},
    "r": {"R", "Rscript"},
}


def test_every_image_promises_the_usual_command_names() -> None:
    assert {language: set(recipe.commands) for language, recipe in RECIPES.items()} == (
        USUAL_COMMANDS
    )


def test_python_answers_to_python_both_ways() -> None:
    recipe = RECIPES["python"]
    assert "python-is-python3" in recipe.debian_packages  # offline: Debian's own link
    assert recipe.online_base.startswith("docker.io/library/python:")  # has `python` itself
