"""Every language's default image, run the way the container backend runs it (``engines``).

Read-only root file system, pid 1 an init running ``sleep infinity`` as 65534, no capabilities,
no new privileges, no network, tmpfs on the work directory, ``/tmp`` and the support directory,
and the code exec'd as 1000:1000 with ``HOME`` the work directory. Each language compiles (where
it does) into ``/tmp`` and runs a small program; afterwards the work directory must hold nothing
but the source (no caches written to ``$HOME``).

The images are not built here (a from-scratch build of all of them takes minutes): a missing
one is skipped. ``scripts/test.sh`` builds them all, as root, before the suite runs.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass

import pytest

from llm_sandbox.images import LANGUAGES, RECIPES, image_exists, image_for

WORKDIR = "/sandbox"
SUPPORT_DIR = "/opt/llm-sandbox"
TMPFS = "rw,exec,size=256m"


@dataclass(frozen=True)
class Smoke:
    source: str
    code: str
    command: str  # run by sh in WORKDIR, after `mkdir -p /tmp/b`; prints "ok 42"


SMOKES = {
    "python": Smoke("main.py", "print('ok', 6 * 7)", "python3 main.py"),
    "javascript": Smoke("main.js", "console.log('ok', 6 * 7);", "node main.js"),
    "java": Smoke(
        "Main.java",
        'public class Main { public static void main(String[] a) { System.out.println("ok " + 6 * 7); } }',  # noqa: E501
        "javac -d /tmp/b Main.java && java -cp /tmp/b Main",
    ),
    "cpp": Smoke(
        "main.cpp",
        '#include <iostream>\nint main() { std::cout << "ok " << 6 * 7 << std::endl; }\n',
        "g++ -o /tmp/b/p main.cpp && /tmp/b/p",
    ),
    # Importing net needs cgo unless CGO_ENABLED=0: the image's own environment must say so.
    "go": Smoke(
        "main.go",
        'package main\nimport ("fmt"; "net")\nvar _ = net.ParseIP\n'
        'func main() { fmt.Println("ok", 6*7) }\n',
        "GOCACHE=/tmp/go-cache GOPATH=/tmp/go GOPROXY=off go build -o /tmp/b/p main.go && /tmp/b/p",
    ),
    "ruby": Smoke("main.rb", 'puts "ok #{6 * 7}"', "ruby main.rb"),
    # png() goes through fontconfig, whose cache must be valid as shipped (else it is rebuilt
    # in $HOME/.cache on every run).
    "r": Smoke(
        "main.R",
        'cat("ok", 6 * 7, "\\n"); png("/tmp/p.png"); plot(1:3); invisible(dev.off())',
        "Rscript main.R",
    ),
}


def test_every_language_has_a_smoke_program() -> None:
    assert set(SMOKES) == set(LANGUAGES)


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=180, check=False
    )


def _engine_answers(engine: str) -> bool:
    if shutil.which(engine) is None:
        return False
    probe = [engine, "info", "--format", "{{.ServerVersion}}" if engine == "docker" else "ok"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _create_args(engine: str, image: str, name: str) -> list[str]:
    # Docker honours a tmpfs's uid and mode; Podman does not (the backend chmods as root).
    owner = ",uid=1000,gid=1000" if engine == "docker" else ""
    return [
        engine, "run", "-d", "--name", name, "--read-only", "--init",
        "--user", "65534:65534", "--entrypoint", "sleep",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "none",
        "--memory", "512m", "--pids-limit", "128",
        "--tmpfs", f"{WORKDIR}:{TMPFS},mode=1777{owner}",
        "--tmpfs", f"/tmp:{TMPFS},mode=1777",
        "--tmpfs", f"{SUPPORT_DIR}:{TMPFS},mode=1777{owner}",
        image, "infinity",
    ]  # fmt: skip


@pytest.mark.engines
@pytest.mark.parametrize("engine", ["docker", "podman"])
@pytest.mark.parametrize("language", sorted(SMOKES))
def test_default_image_runs_code_like_the_backend(engine: str, language: str) -> None:
    if not _engine_answers(engine):
        pytest.skip(f"{engine} is not reachable (run scripts/engines.sh as root)")
    image = image_for(language)
    if not image_exists(image, engine):
        pytest.skip(f"{image} is not built: llm-sandbox images build {language} --engine {engine}")
    smoke = SMOKES[language]
    name = f"llm-sandbox-image-test-{uuid.uuid4().hex[:12]}"
    started = _run(_create_args(engine, image, name))
    assert started.returncode == 0, started.stderr
    try:
        if engine == "podman":
            opened = _run([engine, "exec", "--user", "0:0", name, "chmod", "1777", WORKDIR])
            assert opened.returncode == 0, opened.stderr
        script = (
            f"cat > {smoke.source} && mkdir -p /tmp/b && {smoke.command}"
            f" && echo --- && ls -A {WORKDIR}"
        )
        result = _run(
            [engine, "exec", "-i", "--user", "1000:1000", "-e", f"HOME={WORKDIR}",
             "-w", WORKDIR, name, "sh", "-c", script],
            stdin=smoke.code,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        output, _, listing = result.stdout.partition("---\n")
        assert output.split() == ["ok", "42"], result.stdout + result.stderr
        assert listing.split() == [smoke.source]
    finally:
        _run([engine, "kill", name])
        _run([engine, "rm", "-f", name])


@pytest.mark.engines
@pytest.mark.parametrize("engine", ["docker", "podman"])
@pytest.mark.parametrize("language", sorted(SMOKES))
def test_default_image_answers_to_the_usual_command_names(engine: str, language: str) -> None:
    if not _engine_answers(engine):
        pytest.skip(f"{engine} is not reachable (run scripts/engines.sh as root)")
    image = image_for(language)
    if not image_exists(image, engine):
        pytest.skip(f"{image} is not built: llm-sandbox images build {language} --engine {engine}")
    names = RECIPES[language].commands
    script = 'for c in "$@"; do command -v "$c" >/dev/null || echo "missing $c"; done'
    result = _run(
        [engine, "run", "--rm", "--network", "none", "--user", "1000:1000", image,
         "sh", "-c", script, "sh", *names]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
