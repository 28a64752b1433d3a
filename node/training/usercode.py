"""Loading and calling user code (task factories, Flower clients) with one-line errors.

A user's module is named ``module:attribute``. Whatever goes wrong inside it (an import
error, an exception in a ``fit``) is reported as one line naming the user's file and line,
not a traceback through fednode's internals; a module that cannot be found gets a hint
that its folder must be importable (on ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any

__all__ = ["TaskSetupError", "UserCodeError", "describe", "load_attribute"]

_OWN_ROOTS = tuple(
    str(Path(p).resolve())
    for p in (
        Path(__file__).resolve().parents[1],  # node/
        Path(os.__file__).resolve().parent,  # the standard library
    )
)


class TaskSetupError(ValueError):
    """A node's learner cannot run for a reason its operator must fix: user code, a model
    folder, a data file. ``str()`` is one line; the daemon logs it and keeps serving."""


class UserCodeError(TaskSetupError):
    """User code failed to import or raised; ``str()`` is one line with file and line."""


def _user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame outside fednode, the standard library and installed packages."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return traceback.FrameSummary(exc.filename, exc.lineno or 0, "<module>")
    for frame in reversed(frames):
        name = str(Path(frame.filename).resolve()) if frame.filename else ""
        if not name or name.startswith("<"):
            continue
        if "site-packages" in name or "dist-packages" in name:
            continue
        if name.startswith(_OWN_ROOTS):
            continue
        return frame
    return frames[-1] if frames else None


def describe(exc: BaseException, what: str = "user code") -> str:
    """One line: ``what`` failed, the exception, and the user's file:line."""
    frame = _user_frame(exc)
    where = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{what} raised {type(exc).__name__}{': ' + text if text else ''}{where}"


def load_attribute(target: str, *, what: str) -> Any:
    """Import ``module:attribute`` (dotted attribute paths allowed) and return the object.

    Raises
    ------
    UserCodeError
        Malformed target, module not found (with the PYTHONPATH hint), an exception
        while importing it (with the user's file and line), or no such attribute.
    """
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UserCodeError(f"{what} {target!r} must be 'module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UserCodeError(
                f"cannot import {what} module {module_name!r}: no module named {exc.name!r}; "
                f"the folder that contains it must be importable (add it to PYTHONPATH; "
                f"sys.path now starts with {sys.path[:3]})"
            ) from None
        raise UserCodeError(describe(exc, f"importing {what} module {module_name!r}")) from None
    except Exception as exc:  # anything the user's module raises at import time
        raise UserCodeError(describe(exc, f"importing {what} module {module_name!r}")) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserCodeError(f"{what} module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
