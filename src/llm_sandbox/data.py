"""The previous generation's module for results (`llm_sandbox.data`)."""

from llm_sandbox.results import (
    ArtifactFile,
    ConsoleOutput,
    ExecutionResult,
    FileType,
    PlotOutput,
    StreamCallback,
    Verdict,
)

__all__ = [
    "ArtifactFile",
    "ConsoleOutput",
    "ExecutionResult",
    "FileType",
    "PlotOutput",
    "StreamCallback",
    "Verdict",
]
