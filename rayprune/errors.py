"""User errors: bad input a user can fix, told apart from bugs.

The CLI prints a :class:`UserError` as one line and exits 2; any other exception is a bug in
rayprune (or in user code it calls) and keeps its traceback. ``UserError`` is a ``ValueError`` (and
:class:`UserTypeError` also a ``TypeError``), so ``except ValueError`` keeps working for callers.

>>> issubclass(UserError, ValueError), issubclass(UserTypeError, TypeError)
(True, True)
"""

from __future__ import annotations

__all__ = ["BudgetUnreachable", "Interrupted", "NoModelError", "UserError", "UserTypeError"]


class UserError(ValueError):
    """Input that cannot work, with a message that names the field or file, what was expected and
    what was received."""


class UserTypeError(UserError, TypeError):
    """Input of the wrong type (a string where a number belongs, a factory that is not callable ...)."""


class BudgetUnreachable(UserError):
    """Even the smallest model in the pruning space misses a budget: found before any search. The CLI prints it as
    one line and exits 3 (``validate``, ``prune`` and ``sweep`` alike), so a pipeline tells it from bad input (2)."""


class NoModelError(RuntimeError):
    """A search ran but no model could be exported for a level (every final fine-tune tried failed,
    or no candidate fits); the message gives the cause and where the scored candidates are kept.
    The CLI prints it as one line and exits 4."""


class Interrupted(KeyboardInterrupt):
    """Work stopped by the user (Ctrl-C) before it finished; the message says what is kept and how to
    continue. A ``KeyboardInterrupt``, so code that stops on Ctrl-C still does; the CLI prints it as
    one line and exits 130."""
