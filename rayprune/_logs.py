"""Dropping a library's known, unhelpful log lines while it runs, keeping every other line it writes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def without_log_lines(lines: Mapping[str, str]) -> Iterator[None]:
    """While inside: records of logger ``name`` whose message contains ``lines[name]`` are dropped; every other record
    (of those loggers too) is kept, and the filters go when the block ends.

    >>> seen = []
    >>> log = logging.getLogger("rp_doc_example")
    >>> log.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: seen.append(r.getMessage())})())
    >>> with without_log_lines({"rp_doc_example": "noise"}):
    ...     log.warning("some noise"); log.warning("a real problem")
    >>> log.warning("noise again")
    >>> seen
    ['a real problem', 'noise again']
    """
    installed = [(logging.getLogger(name), lambda record, f=fragment: f not in record.getMessage())
                 for name, fragment in lines.items()]
    for logger, dropped in installed:
        logger.addFilter(dropped)
    try:
        yield
    finally:
        for logger, dropped in installed:
            logger.removeFilter(dropped)
