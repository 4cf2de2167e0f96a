"""Tests of payments_lab.ui_gate's rules (the gate itself runs in tests/test_jupyterhub.py, in a real hub)."""

from __future__ import annotations

import json

import pytest

from payments_lab.ui_gate import allowed, namespace_of, opening_own_namespace, own_namespaces_only, plain_path

COACHES = frozenset({"coach"})


@pytest.mark.parametrize(
    ("path", "namespace"),
    [
        ("namespaces/ana/workflows", "ana"),
        ("namespaces/ana", "ana"),
        ("api/v1/namespaces/ana/workflows/payment-1/history", "ana"),
        ("api/v1/namespaces/learner%2D01/workflows", "learner-01"),
        ("api/v1/namespaces", None),
        ("namespaces", None),
        ("_app/immutable/start.js", None),
        ("api/v1/settings", None),
        ("", None),
    ],
)
def test_the_namespace_a_path_is_about(path: str, namespace: str | None) -> None:
    assert namespace_of(path) == namespace


@pytest.mark.parametrize(
    ("user", "method", "path", "verdict"),
    [
        ("ana", "GET", "namespaces/ana/workflows", True),
        ("ana", "POST", "api/v1/namespaces/ana/workflows/payment-1/cancel", True),
        ("ana", "GET", "namespaces/bo/workflows", False),
        ("ana", "GET", "api/v1/namespaces/bo/workflows", False),
        ("ana", "POST", "api/v1/namespaces/bo/workflows/payment-1/terminate", False),
        ("ana", "GET", "api/v1/namespaces", True),
        ("ana", "GET", "_app/immutable/start.js", True),
        ("ana", "POST", "api/v1/nexus/endpoints", False),
        ("coach", "GET", "api/v1/namespaces/bo/workflows", True),
        ("coach", "POST", "api/v1/namespaces/bo/workflows/payment-1/terminate", True),
        ("coach", "POST", "api/v1/nexus/endpoints", True),
    ],
)
def test_a_learner_reaches_their_own_namespace_only_and_a_facilitator_every_one(user: str, method: str, path: str, verdict: bool) -> None:
    assert allowed(user, COACHES, method, path) is verdict


def test_the_namespace_list_and_the_default_namespace_a_learner_is_shown_are_their_own() -> None:
    listing = {"namespaces": [{"namespaceInfo": {"name": name}} for name in ("default", "ana", "bo")], "nextPageToken": None}
    assert json.loads(own_namespaces_only(json.dumps(listing).encode(), "ana")) == {
        "namespaces": [{"namespaceInfo": {"name": "ana"}}],
        "nextPageToken": None,
    }
    settings = {"DefaultNamespace": "default", "Auth": {"Enabled": False}}
    assert json.loads(opening_own_namespace(json.dumps(settings).encode(), "ana")) == {"DefaultNamespace": "ana", "Auth": {"Enabled": False}}


@pytest.mark.parametrize(
    ("raw_path", "plain"),
    [
        ("/services/temporal/namespaces/ana/workflows", True),
        ("/services/temporal/api/v1/namespaces/ana/workflows/payment-1%20a", True),
        ("/services/temporal/api/v1/namespaces/ana/../bo/workflows", False),
        ("/services/temporal/api/v1/namespaces/ana/%2e%2e/bo/workflows", False),
        ("/services/temporal/api/v1/namespaces/ana%2F..%2Fbo/workflows", False),
        ("/services/temporal/api/v1/namespaces/ana/./workflows", False),
        ("/services/temporal/api/v1/namespaces/ana%5C..%5Cbo/workflows", False),
    ],
)
def test_a_path_with_dot_segments_or_an_encoded_slash_is_not_plain(raw_path: str, plain: bool) -> None:
    """Such a path would pass the namespace rule as one namespace's and reach another once the UI's server cleans it."""
    assert plain_path(raw_path) is plain
