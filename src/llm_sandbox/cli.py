"""The `llm-sandbox` command: run code in a sandbox, and report what this machine enforces."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence

from llm_sandbox.exceptions import ConfigurationError, SandboxError, SandboxTimeoutError

TIMEOUT_EXIT = 124
ERROR_EXIT = 125
INTERRUPTED_EXIT = 130
"""What a shell reports for a program ended by Ctrl-C (128 + SIGINT)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run code in a sandbox; exits with the program's status")
    run.add_argument("--lang", default="python", help="language (default: python)")
    run.add_argument("--backend", default=None, help="local, docker, podman, kubernetes, ...")
    run.add_argument("--timeout", type=float, default=None, help="seconds before the run is killed")
    run.add_argument("--network", action="store_true", help="let the code use the network")
    run.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="RULE",
        help="let the code reach RULE (host, *.domain, address or CIDR, optional :PORT) through "
        "the egress gate; repeatable",
    )
    run.add_argument("--image", default=None, help="container image (docker/podman)")
    run.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", dest="code", help="the code to run")
    source.add_argument("file", nargs="?", help="a file with the code, or - for standard input")

    images = commands.add_parser("images", help="build the default container images")
    images_commands = images.add_subparsers(dest="images_command", required=True)
    build = images_commands.add_parser("build", help="build default images (offline if needed)")
    build.add_argument("langs", nargs="*", help="languages (default: python)")
    build.add_argument("--engine", choices=["docker", "podman"], default="docker")
    build.add_argument(
        "--if-missing", action="store_true", help="skip images already built from this recipe"
    )

    gc = commands.add_parser("gc", help="remove sandboxes left behind by crashed callers")
    gc.add_argument("--all", action="store_true", help="remove every llm-sandbox container")

    serve = commands.add_parser("serve", help="run the HTTP service (REST, SSE, Piston v2)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--config", default=None, help="settings file (TOML or JSON)")
    serve.add_argument("--keys", default=None, help="API key file (default: config directory)")

    mcp = commands.add_parser("mcp", help="serve the sandbox tools to MCP clients over stdio")
    mcp.add_argument("--config", default=None, help="settings file (TOML or JSON)")
    mcp.add_argument("--backend", default=None, help="backend (default: BACKEND, or automatic)")

    keys = commands.add_parser("keys", help="manage the HTTP service's API keys")
    keys.add_argument("--keys", default=None, help="API key file (default: config directory)")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_create = keys_commands.add_parser("create", help="create a key; prints it once")
    keys_create.add_argument("name")
    keys_limits = keys_commands.add_parser(
        "limits", help="show or set the limits a key has of its own"
    )
    keys_limits.add_argument("name")
    keys_limits.add_argument(
        "--replace", action="store_true", help="drop the key's other limits of its own"
    )
    for command in (keys_create, keys_limits):
        command.add_argument(
            "--limit",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a limit of this key instead of the server's (sessions, concurrent_runs, "
            "runs_per_minute, max_timeout, max_memory); repeatable",
        )
    keys_commands.add_parser("list", help="list keys and their limits")
    keys_revoke = keys_commands.add_parser("revoke", help="revoke a key")
    keys_revoke.add_argument("name")

    doctor = commands.add_parser("doctor", help="show which controls each backend enforces here")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _read_code(args: argparse.Namespace) -> str:
    if args.code is not None:
        return str(args.code)
    if args.file == "-":
        return sys.stdin.read()
    with open(args.file, encoding="utf-8") as f:
        return f.read()


def _write(stream: object) -> object:
    def emit(text: str) -> None:
        stream.write(text)  # type: ignore[attr-defined]
        stream.flush()  # type: ignore[attr-defined]

    return emit


def _run(args: argparse.Namespace) -> int:
    from llm_sandbox.session import SandboxSession

    code = _read_code(args)
    options: dict[str, object] = {"backend": args.backend, "verbose": args.verbose}
    if args.network and args.allow:
        raise ConfigurationError("--network gives the whole network; --allow limits it: pick one")
    if args.network:
        options["network"] = True
    elif args.allow:
        from llm_sandbox.egress import EgressPolicy

        options["network"] = EgressPolicy(allow=args.allow)
    if args.image:
        options["image"] = args.image
    with SandboxSession(lang=args.lang, **options) as session:  # type: ignore[arg-type]
        try:
            result = session.run(
                code,
                timeout=args.timeout,
                on_stdout=_write(sys.stdout),  # type: ignore[arg-type]
                on_stderr=_write(sys.stderr),  # type: ignore[arg-type]
            )
        except SandboxTimeoutError as exc:
            print(f"llm-sandbox: {exc}", file=sys.stderr)
            return TIMEOUT_EXIT
    if result.truncated:
        print("llm-sandbox: output was truncated at the output limit", file=sys.stderr)
    if result.out_of_memory:
        print("llm-sandbox: the program was killed for exceeding its memory limit", file=sys.stderr)
    return result.exit_code


def _doctor(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from llm_sandbox.doctor import format_reports, run_doctor

    reports = run_doctor()
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2))
    else:
        print(format_reports(reports))
    return 0 if any(r.usable for r in reports) else 1


def _images(args: argparse.Namespace) -> int:
    from llm_sandbox.images import build_image, image_for, image_up_to_date

    for lang in args.langs or ["python"]:
        if args.if_missing and image_up_to_date(lang, args.engine):
            print(f"{image_for(lang)} is up to date in {args.engine}")
            continue
        build_image(lang, args.engine, progress=lambda line: print(line, flush=True))
    return 0


def _gc(args: argparse.Namespace) -> int:
    from llm_sandbox.cleanup import collect

    removed = collect(all_=args.all)
    for line in removed:
        print(f"removed {line}")
    print(f"{len(removed)} removed")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from llm_sandbox.service.server import serve
    from llm_sandbox.service.settings import load_settings

    serve(load_settings(args.config), host=args.host, port=args.port, keys_file=args.keys)
    return 0


def _mcp(args: argparse.Namespace) -> int:
    import dataclasses

    try:
        from llm_sandbox.mcp_server.environment import mcp_settings
        from llm_sandbox.mcp_server.server import run_stdio
    except ImportError as exc:
        raise ConfigurationError(
            f"the MCP server needs the mcp extra: pip install 'llm-sandbox[mcp]' ({exc})"
        ) from exc
    settings = mcp_settings(args.config)
    if args.backend:
        settings = dataclasses.replace(settings, backend=args.backend.lower())
    run_stdio(settings)
    return 0


def _keys(args: argparse.Namespace) -> int:
    import time

    from llm_sandbox.service.keys import KeyStore

    store = KeyStore(args.keys)
    if args.keys_command == "create":
        token = store.create(args.name, _limit_args(args.limit))
        print(f"created key {args.name!r} in {store.path}; it is shown only now:", file=sys.stderr)
        print(token)
    elif args.keys_command == "limits":
        if args.limit or args.replace:
            own = store.set_limits(args.name, _limit_args(args.limit), replace=args.replace)
        else:
            own = store.record(args.name).limits
        print(f"{args.name}\t{_limits_text(own)}")
    elif args.keys_command == "revoke":
        store.revoke(args.name)
        print(f"revoked key {args.name!r}")
    else:
        for record in store.list():
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
            print(f"{record.name}\tcreated {created} UTC\t{_limits_text(record.limits)}")
    return 0


def _limit_args(items: list[str]) -> dict[str, str]:
    """`--limit NAME=VALUE` arguments (checked by the key store)."""
    limits: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(
                f"--limit {item!r} is not NAME=VALUE; e.g. --limit sessions=4 "
                "--limit max_timeout=60"
            )
        limits[name.strip()] = value.strip()
    return limits


def _limits_text(limits: Mapping[str, int | float]) -> str:
    if not limits:
        return "the server's limits"
    return ", ".join(f"{name}={value}" for name, value in sorted(limits.items()))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "run": _run,
        "doctor": _doctor,
        "images": _images,
        "gc": _gc,
        "serve": _serve,
        "keys": _keys,
        "mcp": _mcp,
    }
    try:
        return commands[args.command](args)
    except SandboxError as exc:
        print(f"llm-sandbox: {exc}", file=sys.stderr)
        return ERROR_EXIT
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"llm-sandbox: {exc}", file=sys.stderr)
        return ERROR_EXIT
    except KeyboardInterrupt:  # Ctrl-C: what was running is cleaned up by now
        print("llm-sandbox: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
