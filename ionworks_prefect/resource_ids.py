"""Ionworks ids in URLs: checked, then path-escaped, so an id names exactly one resource.

Every id the plugin puts into a URL path goes through :func:`path_segment`, whether the plugin builds the path
(:func:`resource_path`) or hands the id to an official client method that formats it into its own path
(``client.pipeline.get(path_segment(pipeline_id))``): ``"../users/me"`` becomes ``..%2Fusers%2Fme`` and
``"abc def?x=1"`` becomes ``abc%20def%3Fx%3D1``, one path segment the server answers 404 for, never another
route or a query. Empty ids, non-strings, ``.`` and ``..`` raise :class:`InvalidResourceId` before anything is
sent.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .exceptions import InvalidResourceId


def check_resource_id(resource_id: Any, what: str = "Ionworks id") -> str:
    """Return ``resource_id`` if it can name exactly one resource in a URL, else raise :class:`InvalidResourceId`.

    Example:
        >>> check_resource_id("")
        Traceback (most recent call last):
        InvalidResourceId: ...
    """
    if not isinstance(resource_id, str) or not resource_id.strip():
        raise InvalidResourceId(f"An {what} must be a non-empty string, got {resource_id!r}",
                                resource_id=resource_id)
    if resource_id in {".", ".."}:  # percent-escaping keeps dots, and URLs drop such path segments
        raise InvalidResourceId(f"{resource_id!r} is not an {what}", resource_id=resource_id)
    return resource_id


def path_segment(resource_id: Any, what: str = "Ionworks id") -> str:
    """``resource_id`` checked and percent-escaped as one URL path segment.

    Example:
        >>> path_segment("../users/me")
        '..%2Fusers%2Fme'
    """
    return quote(check_resource_id(resource_id, what), safe="")


def resource_path(collection: str, resource_id: Any) -> str:
    """``collection/<id>`` with the id checked and path-escaped, so it cannot reach another URL.

    Example:
        >>> resource_path("/pipelines", "a/b")
        '/pipelines/a%2Fb'
    """
    return f"{collection}/{path_segment(resource_id)}"
