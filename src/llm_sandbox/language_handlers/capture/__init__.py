"""Files the plotting hooks of some languages place in the sandbox (read as package data).

They run inside the sandbox, not in this process: `python_usercustomize.py` is copied in as
`usercustomize.py`, `r_profile.R` as the R user profile. See each file's own docstring.
"""

from __future__ import annotations

from importlib import resources


def support_file(name: str) -> bytes:
    """The content of one support file of this package."""
    return resources.files(__name__).joinpath(name).read_bytes()
