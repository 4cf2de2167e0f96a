"""Visibility queries: values quoted for the query language, and a refused query said in plain words."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.service import RPCError, RPCStatusCode

from payments_lab.domain import lone_surrogate_problem
from payments_lab.errors import InvalidArgumentError, PaymentsLabError
from payments_lab.search_attributes import ORGANIZATION_ID, PAYMENT_CURRENCY, PAYMENT_STATUS

PAYMENT_WORKFLOW_TYPES = ("PaymentWorkflow", "ConfirmedPaymentWorkflow")
"""The workflow types that run a payment: the seed's, and the checkout's that waits for the customer (lesson 11)."""

PAYMENTS_QUERY = "WorkflowType IN (" + ", ".join(f"'{name}'" for name in PAYMENT_WORKFLOW_TYPES) + ")"
"""Every payment of a namespace, whichever workflow runs it."""

QUERY_HELP = (
    f"Payments carry {ORGANIZATION_ID.name}, {PAYMENT_STATUS.name} and {PAYMENT_CURRENCY.name}; Temporal's own "
    "attributes include WorkflowId, WorkflowType, ExecutionStatus, StartTime and CloseTime. Quote values "
    f"with single quotes (`{PAYMENT_STATUS.name} = 'completed'`), join conditions with AND / OR, "
    "write times as ISO 8601 (`StartTime > '2026-01-31T00:00:00Z'`)."
)
"""What a visibility query may say, for a learner whose query was refused."""


class VisibilityQueryError(PaymentsLabError, ValueError):
    """The server refused a visibility query: an unknown attribute, a value not quoted, bad syntax."""

    def __init__(self, query: str, server_message: str) -> None:
        super().__init__(f"the server refused the visibility query {query!r}: {server_message}. {QUERY_HELP}")
        self.query = query
        """The query as it was sent."""
        self.server_message = server_message
        """What the server said of it."""


def checked_query(query: object) -> str:
    """``query``, if it is a visibility query as a string.

    Raises:
        TypeError: it is not a string.
        ValueError: it holds what no server takes: a NUL character, or text that is not valid
            Unicode (a byte pasted from a file that is not UTF-8).
    """
    if not isinstance(query, str):
        raise InvalidArgumentError(
            f"query must be a visibility query as a string, not {type(query).__name__} {query!r}: "
            "e.g. \"ExecutionStatus = 'Running'\""
        )
    problems = [problem for problem in [lone_surrogate_problem("query", query)] if problem is not None]
    if "\x00" in query:
        problems.append(f"query contains a NUL character at position {query.index(chr(0)) + 1}")
    unbalanced = _unbalanced_parenthesis(query)
    if unbalanced is not None:
        # The kit puts a condition in parentheses after its own (the lab's task queue): a ')' of the
        # query's own would close them, and an `OR` after it would reach every lab's payments.
        problems.append(f"query's parentheses do not pair up (the {unbalanced}): every '(' needs its ')'")
    if problems:
        raise InvalidArgumentError("; ".join(problems))
    return query


def _unbalanced_parenthesis(query: str) -> str | None:
    """Which parenthesis of ``query`` has no partner, outside its quoted strings, or None if they all pair up."""
    depth, quote, escaped = 0, "", False
    for position, c in enumerate(query, start=1):
        if quote:
            escaped, quote = (not escaped and c == "\\"), ("" if c == quote and not escaped else quote)
        elif c in "'\"`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return f"')' at position {position}"
    return f"{depth} '(' left open" if depth else None


def quoted(value: str) -> str:
    """``value`` as a string literal of Temporal's visibility query language.

    Raises:
        TypeError: ``value`` is not a string.
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(f"a visibility query compares strings here, not {type(value).__name__} {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextmanager
def refused_query_as_error(query: str) -> Iterator[None]:
    """Turn the server's refusal of ``query`` (``INVALID_ARGUMENT``) into :class:`VisibilityQueryError`.

    The server's message may point at a position in the query as it was sent, with the
    conditions the kit adds: the error shows that whole query.
    """
    try:
        yield
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        raise VisibilityQueryError(query, err.message) from None
