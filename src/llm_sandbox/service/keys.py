"""API keys: created once, stored only as sha256 hashes, checked in constant time.

A key is `lsk_` + 32 random bytes (URL-safe base64): high entropy, so one sha256 suffices (no
slow hash is needed against guessing). The store is a JSON file, by default
`$XDG_CONFIG_HOME/llm-sandbox/keys.json` (`~/.config/...`), written atomically with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_sandbox.exceptions import ConfigurationError

PREFIX = "lsk_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_keys_file() -> Path:
    """Where keys live unless `--keys FILE` or the `keys_file` setting says otherwise."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "llm-sandbox" / "keys.json"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """A stored key: its name, the sha256 of the token, and when it was created."""

    name: str
    sha256: str
    created: float


class KeyStore:
    """The keys in one file. Reads the file again when it changed (keys revoked while the
    server runs stop working at the next request)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_keys_file()
        self._records: dict[str, KeyRecord] = {}
        self._stamp: tuple[int, int] | None = None

    def _load(self) -> dict[str, KeyRecord]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return self._records
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                data: Any = json.loads(self.path.read_text(encoding="utf-8"))
                records = {
                    item["name"]: KeyRecord(item["name"], item["sha256"], float(item["created"]))
                    for item in data["keys"]
                }
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigurationError(
                    f"the key file {self.path} is not valid ({exc}); fix or remove it"
                ) from exc
            self._records, self._stamp = records, stamp
        return self._records

    def _save(self, records: dict[str, KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"keys": [vars(r) for r in records.values()]}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._stamp = None

    def create(self, name: str) -> str:
        """A new key named `name`; returns the token (shown once, never stored)."""
        if not NAME.match(name):
            raise ConfigurationError(
                f"key name {name!r} is not valid: use up to 64 letters, digits, '_', '.', '-'"
            )
        records = dict(self._load())
        if name in records:
            raise ConfigurationError(
                f"a key named {name!r} exists; revoke it first or pick another name"
            )
        token = PREFIX + secrets.token_urlsafe(32)
        records[name] = KeyRecord(name, _digest(token), time.time())
        self._save(records)
        return token

    def revoke(self, name: str) -> None:
        records = dict(self._load())
        if name not in records:
            raise ConfigurationError(f"no key named {name!r}; `llm-sandbox keys list` shows them")
        del records[name]
        self._save(records)

    def list(self) -> list[KeyRecord]:
        return sorted(self._load().values(), key=lambda r: r.created)

    def verify(self, token: str) -> str | None:
        """The name of the key `token` is, or None. Every stored hash is compared, each in
        constant time, so timing tells nothing about which (or whether one) matched."""
        digest = _digest(token)
        found: str | None = None
        for record in self._load().values():
            if hmac.compare_digest(digest, record.sha256):
                found = record.name
        return found
