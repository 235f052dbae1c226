"""0.3.x's plot set-up snippets, deliberately absent.

0.3.x captured plots by prepending a snippet (`PYTHON_PLOT_DETECTION_CODE`,
`R_PLOT_DETECTION_CODE`) to the user's code. This generation changes nothing in the code: an
`ArtifactSandboxSession` installs the language's hooks around the program (see
`AbstractLanguageHandler.plot_capture`) and returns the plots in `result.plots`. There is no
snippet to give, so importing one raises an ImportError that says what to do instead.
"""

from __future__ import annotations

_GONE = {"PYTHON_PLOT_DETECTION_CODE": "python", "R_PLOT_DETECTION_CODE": "r"}

__all__: list[str] = []


def __getattr__(name: str) -> object:
    if name in _GONE:
        raise ImportError(
            f"{name} no longer exists: plots are captured without changing the code. Run it in "
            f"ArtifactSandboxSession(lang={_GONE[name]!r}) and read result.plots instead of "
            "prepending a set-up snippet",
            name=name,
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
