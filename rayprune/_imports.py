"""Resolve ``package.module:attribute`` names written in configs (user factories, cost functions)."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import UserError

__all__ = ["import_object", "import_user_module"]


def import_user_module(module_name: str, *, what: str) -> Any:
    """``importlib.import_module``, with a syntax error in the user's file said in one line (file, line, message)
    instead of a traceback through the importer; other failures propagate as they are."""
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:  # IndentationError / TabError included; in the module or in one it imports
        where = ", ".join(str(p) for p in (exc.filename, f"line {exc.lineno}" if exc.lineno else None) if p)
        text = f": {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        raise UserError(f"Importing module {module_name!r} (for {what}) hit a syntax error"
                        + (f" in {where}" if where else "") + f": {exc.msg}{text}") from None


def import_object(path: str, *, what: str = "object") -> Any:
    """Import ``package.module:attr`` (``attr`` may be dotted) and return it.

    >>> import_object("math:sqrt", what="function")(4.0)
    2.0
    """
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise UserError(f"The {what} must be written 'package.module:name'; got {path!r}.")
    module_name, attr = path.split(":")
    try:
        module = import_user_module(module_name, what=f"{what} {path!r}")
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"Cannot import module {module_name!r} for {what} {path!r}: {exc}. Is it installed or on PYTHONPATH?"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"Module {module_name!r} has no attribute {attr!r} (for {what} {path!r}).") from None
    return obj
