"""Faces that import a name's module when the name is first used (PEP 562).

A face (a sub-package's ``__init__.py``) lists what other layers use. Importing every
module behind it at once would make ``import node.training.genesis`` load torch (seconds
and ~190 MB for a membership-only daemon or ``fednode status``) and would turn import
order into import-time circles. A lazy face names each export's module once and
imports it on first attribute access; type checkers see ordinary imports under
``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_face"]


def lazy_face(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the face of ``package``.

    Parameters
    ----------
    package : str
        The face's ``__name__``.
    exports : Mapping[str, tuple[str, ...]]
        Module (absolute, inside ``package``) -> the names the face exports from it.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)``, to assign at module level in the face.

    Raises
    ------
    ValueError
        If a name is exported from two modules, or a module lies outside ``package``.
    """
    where: dict[str, str] = {}
    for module, names in exports.items():
        if not module.startswith(f"{package}."):
            raise ValueError(f"{module} is not inside {package}")
        for name in names:
            if name in where:
                raise ValueError(f"{name} is exported from both {where[name]} and {module}")
            where[name] = module

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        # Cached in the package: the next access is an ordinary attribute lookup.
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
