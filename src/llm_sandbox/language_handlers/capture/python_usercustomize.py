"""Plot capture inside a Python run of an ArtifactSandboxSession. Runs in the sandbox only.

The session places this file as `usercustomize.py` in a directory of its own, first on
PYTHONPATH, and sets `$LLM_SANDBOX_PLOTS_DIR`; Python's `site` imports it at start-up (Debian's
own `sitecustomize` is left alone, and the program's own `usercustomize`, found later on
sys.path, still runs). It prints
nothing and does not touch the program's file, so output and traceback line numbers stay as
they are. It only installs an import hook; nothing is imported until the program does:

* `matplotlib.pyplot`: `plt.show()` and `Figure.show()` save every figure that changed since it
  was last captured as PNG (and `plt.show()` then closes the figures, as closing the window would);
  `savefig` to a file keeps a copy in its format unless the figure was captured unchanged
  already; at exit, figures left open that were never captured (or changed since) are saved.
  seaborn draws through matplotlib and is covered by the same hooks.
* `PIL.Image`: `Image.show()` saves a PNG (there is no viewer); `Image.save()` to a file in an
  image format keeps a copy.
* `plotly.io`: `fig.show()` / `plotly.io.show()` save a PNG when kaleido is installed, else a
  self-contained HTML page that loads plotly.js from its CDN.

Files saved into `$LLM_SANDBOX_ARTIFACTS_DIR` come back by themselves and are not copied. A hook
that fails appends a line to `$LLM_SANDBOX_PLOTS_DIR/_errors.txt` (reported as a warning) and
never disturbs the program.
"""

from __future__ import annotations

import atexit
import importlib.machinery
import importlib.util
import os
import sys
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

_PLOTS = os.environ.get("LLM_SANDBOX_PLOTS_DIR", "")
_ARTIFACTS = os.environ.get("LLM_SANDBOX_ARTIFACTS_DIR", "")
_COPIED = {"png": "png", "svg": "svg", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "pdf": "pdf"}
_COPIED["webp"] = "webp"
_state = {"seq": 0, "busy": 0}


def _next_path(ext: str) -> str:
    _state["seq"] += 1
    return os.path.join(_PLOTS, f"{_state['seq']:04d}-{os.getpid()}.{ext}")


def _report(what: str, error: BaseException) -> None:
    try:
        with open(os.path.join(_PLOTS, "_errors.txt"), "a", encoding="utf-8") as f:
            f.write(f"{what}: {type(error).__name__}: {error}\n")
    except OSError:
        pass


class _Busy:
    """While set, saves are ours (or a library's inside a save): no copies of them are taken."""

    def __enter__(self) -> None:
        _state["busy"] += 1

    def __exit__(self, *exc: object) -> None:
        _state["busy"] -= 1


def _write(ext: str, data: bytes) -> None:
    with open(_next_path(ext), "wb") as f:
        f.write(data)


def _copy_saved(target: Any) -> bool:
    """Keep a copy of an image file the program saved; True when it is (or comes back) a plot."""
    if not isinstance(target, (str, os.PathLike)):  # a tuple: also Python < 3.10
        return False
    path = os.fsdecode(os.fspath(target))
    fmt = _COPIED.get(os.path.splitext(path)[1].lower().lstrip("."))
    if fmt is None or not os.path.isfile(path):
        return False
    if _ARTIFACTS:
        inside = os.path.realpath(_ARTIFACTS) + os.sep
        if os.path.realpath(path).startswith(inside):
            return True
    with open(path, "rb") as f:
        _write(fmt, f.read())
    return True


# --- matplotlib (and seaborn through it) ------------------------------------------------------


def _patch_pyplot(pyplot: ModuleType) -> None:
    figure_class: Any = sys.modules["matplotlib.figure"].Figure
    gcf: Any = sys.modules["matplotlib._pylab_helpers"].Gcf
    captured: weakref.WeakSet[Any] = weakref.WeakSet()
    original_savefig = figure_class.savefig

    def fresh(fig: Any) -> bool:
        return fig in captured and not fig.stale

    def capture(fig: Any) -> None:
        drawn = fig.axes or fig.images or fig.texts or fig.artists or fig.lines or fig.patches
        if fresh(fig) or not drawn:
            return
        with _Busy(), open(_next_path("png"), "wb") as f:
            original_savefig(fig, f, format="png")
        captured.add(fig)

    def capture_open() -> None:
        for _, manager in sorted(gcf.figs.items()):
            capture(manager.canvas.figure)

    def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
        was_fresh = fresh(self)
        with _Busy():
            result = original_savefig(self, fname, *args, **kwargs)
        if _state["busy"] == 0 and not was_fresh:
            try:
                if _copy_saved(fname):
                    captured.add(self)
            except Exception as error:
                _report("savefig", error)
        return result

    def figure_show(self: Any, *args: Any, **kwargs: Any) -> None:
        _guarded("Figure.show", capture, self)

    def show(*args: Any, **kwargs: Any) -> None:
        _guarded("plt.show", capture_open)
        pyplot.close("all")

    figure_class.savefig = savefig
    figure_class.show = figure_show
    pyplot.show = show  # type: ignore[attr-defined]
    atexit.register(_guarded, "figures open at exit", capture_open)


# --- PIL ----------------------------------------------------------------------------------------


def _patch_pil(image_module: ModuleType) -> None:
    image_class: Any = image_module.Image
    original_save = image_class.save
    displayable = ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16")

    def save(self: Any, fp: Any, format: Any = None, **params: Any) -> Any:
        with _Busy():
            result = original_save(self, fp, format, **params)
        if _state["busy"] == 0:
            _guarded("Image.save", _copy_saved, fp)
        return result

    def show_image(image: Any) -> None:
        shown = image if image.mode in displayable else image.convert("RGBA")
        with _Busy():
            original_save(shown, _next_path("png"), "PNG")

    def show(self: Any, *args: Any, **kwargs: Any) -> None:
        _guarded("Image.show", show_image, self)

    image_class.save = save
    image_class.show = show


# --- plotly -----------------------------------------------------------------------------------


def _patch_plotly(pio: ModuleType) -> None:
    def save(fig: Any) -> None:
        if importlib.util.find_spec("kaleido") is not None:
            try:
                _write("png", pio.to_image(fig, format="png"))
                return
            except Exception as error:
                _report("plotly static image (kept the HTML instead)", error)
        html = pio.to_html(fig, include_plotlyjs="cdn", full_html=True)
        _write("html", html.encode("utf-8"))

    def show(fig: Any, *args: Any, **kwargs: Any) -> None:
        _guarded("plotly show", save, fig)

    pio.show = show  # type: ignore[attr-defined]


# --- the import hook --------------------------------------------------------------------------


def _guarded(what: str, action: Callable[..., Any], *args: Any) -> None:
    try:
        action(*args)
    except Exception as error:
        _report(what, error)


_PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "matplotlib.pyplot": _patch_pyplot,
    "PIL.Image": _patch_pil,
    "plotly.io": _patch_plotly,
}


class _PatchingLoader:
    """Runs the real loader, then the patch; the module keeps its real loader afterwards."""

    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        _guarded(f"hooking {module.__name__}", self._patch, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder:
    """A meta path finder that only wraps the loaders of the modules in `_PATCHES`."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def _chain() -> None:
    """Run the `usercustomize` this file shadows, if there is one later on sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    entries = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    if here not in entries:
        return
    later = sys.path[entries.index(here) + 1 :]
    spec = importlib.machinery.PathFinder.find_spec("usercustomize", later)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if _PLOTS:
    sys.meta_path.insert(0, _Finder())
_chain()
