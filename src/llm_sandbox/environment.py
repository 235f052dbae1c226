"""Combining the user's environment variables with the ones we set, in one place.

The user's value wins. For variables that hold a list of paths (`PATH`, `PYTHONPATH`, ...)
ours are appended after the user's, so `runtime_config={"environment": {"PYTHONPATH":
"/app"}}` keeps `/app` first and installed libraries still import.
"""

from __future__ import annotations

from collections.abc import Mapping

PATH_LISTS = frozenset(
    {
        "PATH",
        "PYTHONPATH",
        "NODE_PATH",
        "CLASSPATH",
        "R_LIBS",
        "R_LIBS_USER",
        "R_LIBS_SITE",
        "GEM_PATH",
        "RUBYLIB",
        "PERL5LIB",
        "LD_LIBRARY_PATH",
        "GOPATH",
    }
)
"""Variables whose value is a colon-separated list of directories."""


def merge(user: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """`ours` with `user`'s variables on top; path lists become the user's entries then ours."""
    merged = dict(ours)
    for name, value in user.items():
        if name in PATH_LISTS and ours.get(name):
            mine = [part for part in value.split(":") if part]
            merged[name] = ":".join([*mine, *(p for p in ours[name].split(":") if p not in mine)])
        else:
            merged[name] = value
    return merged
