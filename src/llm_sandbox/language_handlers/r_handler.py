"""The 0.3.x import path of `RHandler` (the language is the module `r`).

A compatibility alias only: it defines no `HANDLER`, so the registry does not take it for a
language of its own.
"""

from llm_sandbox.language_handlers.r import RHandler, cran_repository

__all__ = ["RHandler"]

_get_r_repo = cran_repository  # 0.3.x had this private helper
