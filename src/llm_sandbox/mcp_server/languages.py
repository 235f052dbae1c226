"""What the MCP server tells an agent about each language (tool `get_language_details`,
resource `sandbox://languages`): read from the language handlers, never a hand-kept table."""

from __future__ import annotations

from typing import Any

from llm_sandbox.kernels.languages import RUNNERS
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory

_HELLO = {
    "python": 'print("hello")',
    "javascript": 'console.log("hello");',
    "typescript": 'console.log("hello");',
    "r": 'cat("hello\\n")',
    "ruby": 'puts "hello"',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }',
    "java": "public class Main {\n  public static void main(String[] a) {\n"
    '    System.out.println("hello");\n  }\n}',
    "cpp": '#include <iostream>\nint main() { std::cout << "hello\\n"; }',
}


def supported() -> list[str]:
    return LanguageHandlerFactory.get_supported_languages()


def details(language: str) -> dict[str, Any]:
    """The details of `language` (already checked to be supported)."""
    handler = LanguageHandlerFactory.create_handler(language)
    plots = handler.is_support_plot_detection
    info: dict[str, Any] = {
        "language": handler.name,
        "file_extension": handler.file_extension,
        "library_installation": handler.is_support_library_installation,
        "visualization_support": plots,
        "plot_libraries": [str(lib.value) for lib in handler.supported_plot_libraries]
        if plots
        else [],
        "interactive": handler.name in RUNNERS,
    }
    if handler.name in _HELLO:
        info["examples"] = [{"title": "Hello", "code": _HELLO[handler.name]}]
    return info


def all_details() -> dict[str, dict[str, Any]]:
    return {lang: details(lang) for lang in supported()}
