"""Pieces shared by llara's restricted unpicklers (:mod:`llara.sr.authors`, :mod:`llara.data.llara_files`).

:class:`HookedUnpickler` is Python's pure-Python unpickler reading from memory, with every call
(``REDUCE``, ``INST``, ``OBJ``), every ``__new__`` (``NEWOBJ``, ``NEWOBJ_EX``) and every ``BUILD`` routed
through methods a reader restricts. It is used instead of the C unpickler because that one allocates
what an opcode declares before reading it: ``BINBYTES8``/``BYTEARRAY8`` ask for the announced size, and
``LONG_BINPUT`` grows the memo array to twice the index it names, so a pickle of a few bytes can ask
for tens of GB. Here ``io.BytesIO`` never returns more than the file holds and the memo is a dict.

:class:`AllocationBudget` bounds what the functions a pickle may call build: a total of bytes
(:func:`budget_for`: twice the file's size plus 64 MiB) and optionally a number of calls.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

#: the slack every file gets on top of twice its size
BUDGET_SLACK_BYTES = 64 * 2**20


def budget_for(file_size: int) -> int:
    """The bytes the objects built from a file of ``file_size`` bytes may take: 2 x its size + 64 MiB."""
    return 2 * max(int(file_size), 0) + BUDGET_SLACK_BYTES


class BudgetExceeded(Exception):
    """A pickle asked for more than its :class:`AllocationBudget`; reported with the file's name."""


class AllocationBudget:
    """Bytes (and optionally calls) a pickle's reconstruction may use; charged before each allocation."""

    def __init__(self, limit_bytes: int, max_calls: int | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.max_calls = max_calls
        self.used_bytes = 0
        self.calls = 0

    def charge(self, nbytes: Any, what: str) -> None:
        """Count ``nbytes`` for ``what``; refused once the total passes the limit (nothing is allocated yet)."""
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
            raise BudgetExceeded(f"{what}: malformed size {nbytes!r}")
        self.used_bytes += nbytes
        if self.used_bytes > self.limit_bytes:
            raise BudgetExceeded(
                f"{what} would bring what the pickle builds to {self.used_bytes:,} bytes, more than the "
                f"{self.limit_bytes:,} allowed for a file of this size (2 x its size + 64 MiB); refused"
            )

    def count(self, what: str) -> None:
        """Count one call building ``what``; refused past :attr:`max_calls`."""
        self.calls += 1
        if self.max_calls is not None and self.calls > self.max_calls:
            raise BudgetExceeded(f"more than {self.max_calls:,} {what} in one pickle; refused")


class HookedUnpickler(pickle._Unpickler):  # noqa: SLF001 - the pure-Python unpickler is the point
    """The pure-Python unpickler over bytes in memory, with calls, ``__new__`` and ``BUILD`` as hooks."""

    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))

    # hooks a reader overrides -------------------------------------------------------------------------

    def call(self, func: Any, args: tuple) -> Any:
        """``func(*args)`` for REDUCE, INST and OBJ."""
        return func(*args)

    def new(self, cls: Any, args: tuple, kwargs: dict) -> Any:
        """``cls.__new__(cls, *args, **kwargs)`` for NEWOBJ and NEWOBJ_EX."""
        if not isinstance(cls, type):
            raise pickle.UnpicklingError(f"NEWOBJ of {cls!r}, which is not a class")
        return cls.__new__(cls, *args, **kwargs)

    def check_build(self, inst: Any, state: Any) -> None:
        """Called before ``inst`` gets ``state`` (BUILD); raise to refuse."""

    # opcodes routed through the hooks ---------------------------------------------------------------

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        if not isinstance(args, tuple):
            raise pickle.UnpicklingError(f"REDUCE arguments must be a tuple, got {type(args).__name__}")
        self.stack[-1] = self.call(self.stack[-1], args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if not isinstance(args, tuple):
            raise pickle.UnpicklingError(f"NEWOBJ arguments must be a tuple, got {type(args).__name__}")
        self.append(self.new(cls, args, {}))

    def _load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise pickle.UnpicklingError("NEWOBJ_EX needs a tuple and a dict")
        self.append(self.new(cls, args, kwargs))

    def _load_build(self) -> None:
        self.check_build(self.stack[-2], self.stack[-1])
        pickle._Unpickler.load_build(self)  # noqa: SLF001

    def _instantiate(self, klass: Any, args: list) -> None:  # INST and OBJ
        self.append(self.call(klass, tuple(args)))

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build
