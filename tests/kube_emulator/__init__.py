"""A Kubernetes API emulator backed by Docker: a test double (see `server.py` for its scope)."""

from .server import KubeEmulator

__all__ = ["KubeEmulator"]
