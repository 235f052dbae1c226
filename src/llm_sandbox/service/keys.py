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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.service.settings import key_limit_overrides

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
    """A stored key: its name, the sha256 of the token, when it was created, and the limits it
    has of its own (the others are the server's `[limits]`)."""

    name: str
    sha256: str
    created: float
    limits: Mapping[str, int | float] = field(default_factory=dict)


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
                    item["name"]: KeyRecord(
                        item["name"],
                        item["sha256"],
                        float(item["created"]),
                        key_limit_overrides(
                            item.get("limits", {}), f"{self.path}, key {item['name']!r}"
                        ),
                    )
                    for item in data["keys"]
                }
            except (OSError, ValueError, KeyError, TypeError, ConfigurationError) as exc:
                raise ConfigurationError(
                    f"the key file {self.path} is not valid ({exc}); fix or remove it"
                ) from exc
            self._records, self._stamp = records, stamp
        return self._records

    def _save(self, records: dict[str, KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"keys": [{**vars(r), "limits": dict(r.limits)} for r in records.values()]}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._stamp = None

    def create(self, name: str, limits: Mapping[str, Any] | None = None) -> str:
        """A new key named `name`, with `limits` of its own (e.g. `{"sessions": 2}`); returns
        the token (shown once, never stored)."""
        own = key_limit_overrides(limits or {}, f"the limits of key {name!r}")
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
        records[name] = KeyRecord(name, _digest(token), time.time(), own)
        self._save(records)
        return token

    def set_limits(
        self, name: str, limits: Mapping[str, Any], *, replace: bool = False
    ) -> Mapping[str, int | float]:
        """Give key `name` these limits of its own (added to those it has, or instead of them
        with `replace`); returns what it has now. Running servers apply them at the next
        request."""
        own = key_limit_overrides(limits, f"the limits of key {name!r}")
        records = dict(self._load())
        record = self._get(records, name)
        merged = own if replace else {**record.limits, **own}
        records[name] = KeyRecord(record.name, record.sha256, record.created, merged)
        self._save(records)
        return merged

    def limits_of(self, name: str) -> Mapping[str, int | float]:
        """The limits key `name` has of its own (none for a name not in the store)."""
        record = self._load().get(name)
        return record.limits if record is not None else {}

    def record(self, name: str) -> KeyRecord:
        """The stored key `name` (ConfigurationError naming the fix when there is none)."""
        return self._get(self._load(), name)

    @staticmethod
    def _get(records: dict[str, KeyRecord], name: str) -> KeyRecord:
        if name not in records:
            raise ConfigurationError(f"no key named {name!r}; `llm-sandbox keys list` shows them")
        return records[name]

    def revoke(self, name: str) -> None:
        records = dict(self._load())
        self._get(records, name)
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
