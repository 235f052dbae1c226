"""JavaScript: runs the code with the sandbox's `node`; libraries come from npm.

Libraries are installed with `npm install --prefix <libs>` into `<libs>/node_modules`, and the
prefix's `package.json` remembers every install, so a later install never prunes an earlier one.

Finding the libraries at run time:

* CommonJS (`require`) honours `NODE_PATH`, which lists the libraries directories.
* ES modules ignore `NODE_PATH`: a bare `import "x"` is only looked up in `node_modules`
  directories above the importing file, and the code lives elsewhere. When the code uses
  `import`/`export` (static or dynamic), the run gets a tiny resolve hook (`--import` of a
  `data:` URL, Node 18.19+) that retries a bare specifier from the libraries directories when the
  normal lookup fails. Code with a static `import`/`export` statement is saved as `main.mjs` so
  that every Node version treats it as a module (Node 18 has no syntax detection). The hook costs
  a loader thread (about 40 ms), so plain CommonJS code does not get it.

Install scripts: `npm install` runs with `--ignore-scripts`. The install is the one step with the
network on and the libraries directory writable (and, in containers, running as root), which is
exactly where lifecycle scripts are the usual supply-chain attack; pure JavaScript packages do
not need them, and packages that do (native add-ons, binary downloaders) cannot work here anyway
without a compiler in the image or access to their download hosts. A subclass that needs them
sets `run_install_scripts = True`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.parse
from collections.abc import Sequence

from llm_sandbox.images.naming import image_name
from llm_sandbox.images.recipes import Recipe
from llm_sandbox.language_handlers.base import (
    AbstractLanguageHandler,
    CommandPlan,
    LanguageConfig,
)
from llm_sandbox.language_handlers.syntax import QUOTED_NAME, ImportForm, SourceRules, Syntax
from llm_sandbox.layout import BAKED_LIBS_DIR

DEFAULT_IMAGE = image_name("javascript")
BAKED_LIBS = f"{BAKED_LIBS_DIR}/javascript"
NPM_CACHE = "/tmp/npm-cache"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# An npm package: optional lowercase scope, a name that does not start with "." or "_", and an
# optional version, range or dist-tag after "@". No ":" (aliases, URLs, `file:`/`git+` specs),
# no "/" outside the scope (paths, GitHub shorthands), no "#", no spaces.
_NAME = r"(?:@[a-z0-9][a-z0-9._~-]*/)?[A-Za-z0-9][A-Za-z0-9._~-]*"
_VERSION = r"[A-Za-z0-9^~*<>=][A-Za-z0-9.^~*<>=|+-]*"
NPM_SPEC = re.compile(rf"^(?P<name>{_NAME})(?:@(?P<version>{_VERSION}))?$")
# npm treats any spec ending like this as a tarball on disk.
_TARBALL = re.compile(r"\.(?:tgz|tar|tar\.gz)$", re.IGNORECASE)
MAX_NAME_LENGTH = 214

# Static module syntax: `import x from`, `import {a} from`, `import * as`, `import "side-effect"`,
# `export ...`, or `import.meta`. Dynamic `import(...)` also needs the hook but works in CommonJS.
_ESM_SYNTAX = re.compile(
    r"^[ \t]*(?:import[ \t]*(?:[\w$*{]|[\"'])|export[ \t]+(?:[\w$*{]))|\bimport\.meta\b",
    re.MULTILINE,
)
_DYNAMIC_IMPORT = re.compile(r"\bimport\s*\(")

_RESOLVE_HOOK = """\
const PARENTS = %s;
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    const bare = !/^(?:[./]|[A-Za-z][A-Za-z0-9+.-]*:)/.test(specifier);
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || !bare) throw error;
    for (const parentURL of PARENTS) {
      try {
        return await next(specifier, { ...context, parentURL });
      } catch {}
    }
    throw error;
  }
}
"""


def _data_url(source: str) -> str:
    return "data:text/javascript," + urllib.parse.quote(source, safe="")


def resolve_hook_url(directories: Sequence[str]) -> str:
    """An `--import` URL registering a hook that resolves bare imports from `directories`."""
    parents = json.dumps([f"file://{directory}/" for directory in directories])
    hooks = _data_url(_RESOLVE_HOOK % parents)
    return _data_url(f'import {{ register }} from "node:module";\nregister({json.dumps(hooks)});\n')


def uses_module_syntax(code: str) -> bool:
    """Whether the code has static `import`/`export` statements (so it must be an ES module)."""
    return _ESM_SYNTAX.search(code) is not None


class JavaScriptHandler(AbstractLanguageHandler):
    run_install_scripts: bool = False
    """Let `npm install` run packages' lifecycle scripts (off: see the module docstring)."""

    aliases = ("js", "node", "nodejs")
    source_rules = SourceRules(
        syntax=Syntax(("//",), (("/*", "*/"),), quotes="\"'", templates=(("`", "${"),)),
        imports=(
            ImportForm(re.compile(r"\brequire\s*\(\s*" + QUOTED_NAME), 2),
            ImportForm(re.compile(r"\bimport\s*\(\s*" + QUOTED_NAME), 2),
            ImportForm(
                re.compile(r"\b(?:import|export)\s+(?:[\w*${}\s,]+?\s+from\s+)?" + QUOTED_NAME), 2
            ),
        ),
        spelling=re.compile(r"^node:"),
    )
    recipe = Recipe(
        language="javascript",
        debian_packages=("nodejs", "npm"),
        online_base="docker.io/library/node:22-bookworm-slim",
        # Debian's package has both names; the official image only `node`.
        online_commands=(
            'command -v nodejs >/dev/null || ln -s "$(command -v node)" /usr/local/bin/nodejs',
        ),
        commands=("node", "nodejs", "npm"),
    )
    tools = (("node", "install Node.js: apt-get install nodejs (and npm for libraries)"),)
    package_rule = (
        "npm package {name!r} is not a registry package name; use a name with an optional "
        "version, range or tag, such as 'lodash', 'lodash@4.17.21', 'lodash@^4' or "
        "'@types/node@20' (paths, URLs, git and file: specs, aliases and options are not accepted)"
    )
    libraries_noun = "npm packages"
    package_index_hosts = ("registry.npmjs.org",)
    package_index_env = ("npm_config_registry", "NPM_CONFIG_REGISTRY")
    end_of_options = "--"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        npm_install = "npm install --prefix {libs} --no-audit --no-fund --no-update-notifier"
        scripts = "" if self.run_install_scripts else " --ignore-scripts"
        self.config = LanguageConfig(
            name="javascript",
            file_extension="js",
            execution_commands=["node {file}"],
            package_manager=f"{npm_install} --loglevel=error{scripts}",
            image=DEFAULT_IMAGE,
        )

    # --- 0.3.x interface: its import regex and comment patterns (see `filter_comments`) --------
    def get_import_patterns(self, module: str) -> str:
        """Matches `import ... from "m"`, `import "m"` and `require("m")` (either quote)."""
        quoted = "[\"']" + re.escape(module) + "[\"']"
        return rf"(?:import(?:\s+.*\s+from)?\s*{quoted};?|require\s*\(\s*{quoted}\s*\);?)"

    @staticmethod
    def get_multiline_comment_patterns() -> str:
        return r"/\*[\s\S]*?\*/"

    @staticmethod
    def get_inline_comment_patterns() -> str:
        return r"//.*$"

    def source_name(self, code: str) -> str:
        return "main.mjs" if uses_module_syntax(code) else "main.js"

    def command_plan(self, code: str, run_id: int) -> CommandPlan:
        plan = super().command_plan(code, run_id)
        if not (uses_module_syntax(code) or _DYNAMIC_IMPORT.search(code)):
            return plan
        hook = resolve_hook_url([self.libs_dir, BAKED_LIBS])
        return dataclasses.replace(plan, run=[plan.run[0], "--import", hook, *plan.run[1:]])

    def run_env(self, workdir: str) -> dict[str, str]:
        return {"NODE_PATH": f"{self.libs_dir}/node_modules:{BAKED_LIBS}/node_modules"}

    def install_env(self) -> dict[str, str]:
        # The cache stays out of the work directory (installs may run as root in containers).
        # Node trusts only its own built-in CA list; add the system's, which carries any CA of
        # a TLS-inspecting proxy (a container backend replaces it with the host's bundle).
        return {
            "npm_config_cache": NPM_CACHE,
            "npm_config_update_notifier": "false",
            "NODE_EXTRA_CA_CERTS": SYSTEM_CA_BUNDLE,
        }

    def validate_library(self, name: str) -> None:
        match = NPM_SPEC.fullmatch(name) if isinstance(name, str) else None
        if match is None or len(match.group("name")) > MAX_NAME_LENGTH or _TARBALL.search(name):
            raise self.invalid_library(name)


HANDLER = JavaScriptHandler
