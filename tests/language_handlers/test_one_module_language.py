"""A language is one module: this file adds Perl, with no edit anywhere else, and uses it.

Everything the package asks of a language is declared by the handler class below: how to run
it, which host tool the embedded backend needs, what it calls its libraries (it has no package
manager), its alias, how its source reads for the security policy (comments, strings, `use` and
`require`, `::` between a module and its submodules) and the recipe of its default image. The
tests register it, run a program on the embedded backend, try an install, check a policy, and
ask the image builder for its recipe.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import InvalidPackageError
from llm_sandbox.images import LANGUAGES
from llm_sandbox.images.recipes import Recipe
from llm_sandbox.language_handlers import AbstractLanguageHandler, LanguageConfig
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.language_handlers.syntax import ImportForm, SourceRules, Syntax
from llm_sandbox.security import RestrictedModule, SecurityIssueSeverity, SecurityPolicy
from support import open_or_skip


class PerlHandler(AbstractLanguageHandler):
    aliases = ("pl",)
    source_rules = SourceRules(
        syntax=Syntax(line_comments=("#",), block_comments=(("=pod", "=cut"),), quotes="\"'"),
        imports=(ImportForm(re.compile(r"\b(?:use|require)\s+([A-Za-z_][\w:]*)")),),
        separators=("::",),
    )
    recipe = Recipe(
        language="perl", debian_packages=("perl",), online_base="docker.io/library/perl:5"
    )
    tools = (("perl", "install Perl: apt-get install perl"),)
    libraries_noun = "CPAN modules"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            name="perl", file_extension="pl", execution_commands=["perl {file}"]
        )


@pytest.fixture
def perl() -> Iterator[None]:
    assert "perl" not in LanguageHandlerFactory.get_supported_languages()
    LanguageHandlerFactory.register_handler("perl", PerlHandler)
    try:
        yield
    finally:
        LanguageHandlerFactory.unregister_handler("perl")
    assert "perl" not in LanguageHandlerFactory.get_supported_languages()


PROGRAM = """\
use strict;
use List::Util qw(sum);
# The answer, from a core module:
print "perl says ", sum(20, 22), "\\n";
"""


@pytest.mark.usefixtures("perl")
def test_a_registered_language_runs_and_refuses_installs_clearly() -> None:
    assert "perl" in LanguageHandlerFactory.get_supported_languages()
    session = open_or_skip(SandboxSession(lang="perl", backend="local"), "the local backend")
    try:
        result = session.run(PROGRAM)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "perl says 42\n", "")
        with pytest.raises(InvalidPackageError, match="no package manager") as refused:
            session.install(["JSON::PP"])
        assert "package_manager" in str(refused.value)  # ...and it says how to give it one
        assert session.run("print 1 + 1").stdout == "2"  # the session is still usable
    finally:
        session.close()


@pytest.mark.usefixtures("perl")
def test_a_policy_reads_the_languages_own_import_forms() -> None:
    policy = SecurityPolicy(
        severity_threshold=SecurityIssueSeverity.MEDIUM,
        restricted_modules=[
            RestrictedModule("Socket", "network access", SecurityIssueSeverity.HIGH)
        ],
    )
    flagged = policy.check("use strict;\nuse Socket;\nprint 1;\n", "perl")
    assert [(v.kind, v.matched, v.line) for v in flagged] == [("module", "Socket", 2)]
    assert not policy.is_safe("require Socket::Constants;", "pl")[0]  # alias; a submodule
    for harmless in [
        'print "use Socket;\\n";',
        "print 'use Socket;';",
        "# use Socket;\nprint 1;",
        "=pod\n\nuse Socket;\n\n=cut\nprint 1;",
        "use IO::Socketry;",
        "use SocketX;",
    ]:
        assert policy.is_safe(harmless, "perl") == (True, []), harmless


@pytest.mark.usefixtures("perl")
def test_the_image_builder_takes_the_languages_recipe() -> None:
    from llm_sandbox.images import builder, image_for

    assert builder.recipe_for("perl") is PerlHandler.recipe
    assert image_for("perl") == "localhost/llm-sandbox/perl:1"
    assert "FROM docker.io/library/perl:5" in builder.dockerfile(PerlHandler.recipe)
    assert "perl" not in LANGUAGES  # the CLI's list stays the built-in languages
