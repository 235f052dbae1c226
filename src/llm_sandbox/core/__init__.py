"""The previous generation's `llm_sandbox.core` package (configuration and the session base)."""
