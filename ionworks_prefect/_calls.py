"""Calling the synchronous Ionworks client: typed error translation, in-place retries, worker threads.

:func:`call` is the one place a request is retried (see :mod:`ionworks_prefect.retries` for the policy) and the
one place a client failure becomes a typed error: ``IonworksError`` by status, a transport failure as
transient, a malformed URL as permanent, and a ``ValueError``/``KeyError``/``TypeError``/non-JSON answer/pydantic
error of a client model as :class:`IonworksRequestError` naming the action.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import requests
from ionworks.errors import IonworksError
from pydantic import ValidationError

from .exceptions import IonworksNotFound, IonworksPrefectError, IonworksRequestError, IonworksTransientError

T = TypeVar("T")
_log = logging.getLogger("ionworks_prefect")

#: Longest Retry-After honoured before handing the retry to Prefect's backoff.
MAX_RETRY_AFTER_SECONDS = 60.0
TRANSIENT_STATUS = frozenset({408, 425, 429})
#: 5xx answers that say the server will never do this, so retrying cannot help.
PERMANENT_SERVER_STATUS = frozenset({501, 505})
_TRANSPORT_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                     requests.exceptions.ChunkedEncodingError)
#: Requests that can never succeed as written: retrying them only wastes the budget.
_PERMANENT_REQUEST_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                             requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader,
                             requests.exceptions.TooManyRedirects, requests.exceptions.URLRequired)


def is_transient_status(status: int | None) -> bool:
    """True for HTTP statuses worth retrying: 408, 425, 429 and 5xx other than 501 and 505.

    Example:
        >>> is_transient_status(503), is_transient_status(404), is_transient_status(501)
        (True, False, False)
    """
    if status is None:
        return False
    return status in TRANSIENT_STATUS or (status >= 500 and status not in PERMANENT_SERVER_STATUS)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form), capped; None when absent or unparseable.

    Example:
        >>> parse_retry_after("2")
        2.0
    """
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return None if seconds is None or seconds < 0 else min(seconds, MAX_RETRY_AFTER_SECONDS)


def _http_response(exc: BaseException) -> requests.Response | None:
    """The HTTP response behind a client error; the client raises ``from None`` but keeps ``__context__``."""
    context = exc.__context__
    return getattr(context, "response", None) if isinstance(context, requests.RequestException) else None


def _with_target(message: str, response: Any) -> str:
    """A 404's message with the path that was asked for, so it names the id (as sent, path-escaped)."""
    request = getattr(response, "request", None)
    url = str(getattr(request, "url", "") or "")
    path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0] if url else ""
    return f"{message} ({request.method} {path})" if path and path not in message else message


def _is_transport_failure(exc: IonworksError) -> bool:
    if isinstance(exc.__context__, _PERMANENT_REQUEST_ERRORS):
        return False
    if isinstance(exc.__context__, _TRANSPORT_ERRORS):
        return True
    text = str(exc.message)
    return exc.status_code is None and text.startswith(("Error during request to", "Failed to upload to signed URL"))


def translate_error(exc: BaseException, action: str) -> IonworksPrefectError | None:
    """Map a client/transport exception to a typed error, or None when it is not an API failure.

    ``action`` names what was being done ("submit pipeline"); it leads the message, followed by the
    server's own message.

    Example:
        >>> translate_error(IonworksError("busy", status_code=503), "get pipeline").status_code
        503
    """
    if isinstance(exc, IonworksPrefectError):
        return exc
    if isinstance(exc, IonworksError):
        message = exc.message if isinstance(exc.message, str) else repr(exc.message)
        if is_transient_status(exc.status_code) or _is_transport_failure(exc):
            response = _http_response(exc)
            retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
            return IonworksTransientError(message, status_code=exc.status_code, error_code=exc.error_code,
                                          retry_after=retry_after, action=action)
        if exc.status_code == 404:
            return IonworksNotFound(_with_target(message, _http_response(exc)), status_code=404,
                                    error_code=exc.error_code, action=action)
        return IonworksRequestError(message, status_code=exc.status_code, error_code=exc.error_code, action=action)
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return None  # an answer that is not JSON: see unexpected_error
    if isinstance(exc, (_PERMANENT_REQUEST_ERRORS, httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return IonworksRequestError(f"{type(exc).__name__}: {exc}", action=action)
    if isinstance(exc, (requests.RequestException, httpx.TransportError)):
        return IonworksTransientError(f"{type(exc).__name__}: {exc}", action=action)
    return None


def unexpected_error(exc: Exception, action: str,
                     invalid: type[IonworksPrefectError] = IonworksRequestError) -> IonworksPrefectError:
    """The typed error for a non-API exception raised while calling the client.

    A non-JSON answer (``JSONDecodeError``), a record the client's pydantic model rejects, a missing field
    (``KeyError``) or a wrong shape (``TypeError``/``AttributeError``) is an :class:`IonworksRequestError`
    ("unexpected answer"); any other ``ValueError`` is the client refusing its input, raised as ``invalid``.

    Example:
        >>> unexpected_error(KeyError("id"), "get pipeline").message
        "Unexpected answer from Ionworks: no field 'id'"
    """
    if isinstance(exc, (json.JSONDecodeError, requests.exceptions.JSONDecodeError)):
        return IonworksRequestError(f"Ionworks answered with something that is not JSON ({exc})", action=action)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        return IonworksRequestError(f"Unexpected answer from Ionworks: {first['msg']} at {where or 'the top'} "
                                    f"({exc.title})", action=action)
    if isinstance(exc, KeyError):
        return IonworksRequestError(f"Unexpected answer from Ionworks: no field {exc}", action=action)
    if isinstance(exc, (TypeError, AttributeError, IndexError)):
        return IonworksRequestError(f"Unexpected answer from Ionworks: {exc}", action=action)
    message = str(exc) or type(exc).__name__
    if issubclass(invalid, IonworksRequestError):
        return invalid(message, action=action)
    return invalid(f"{action}: {message}")


def json_answer(answer: Any, action: str, kind: type = dict) -> Any:
    """``answer`` if the client decoded a JSON ``kind`` (dict or list); the client hands back the raw response
    for a non-JSON answer (an HTML page after a redirect), which is an :class:`IonworksRequestError`.

    Example:
        >>> json_answer({"id": "p1"}, "get pipeline")["id"]
        'p1'
    """
    if isinstance(answer, kind):
        return answer
    if isinstance(answer, requests.Response):
        detail = f"{answer.status_code} {answer.headers.get('Content-Type') or 'no content type'} from {answer.url}"
    else:
        detail = type(answer).__name__
    raise IonworksRequestError(f"Ionworks answered with something that is not a JSON {kind.__name__} ({detail})",
                               action=action)


def error_from_http_response(response: httpx.Response, action: str) -> IonworksPrefectError:
    """Build the typed error for a non-2xx ``httpx`` response, parsing the body as the official client does.

    Example:
        >>> error_from_http_response(httpx.Response(404, json={"detail": "gone"}), "get").status_code
        404
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error_code" in body:
        payload: Any = body
    elif isinstance(body, dict):
        payload = body.get("detail", response.reason_phrase)
    else:
        payload = response.text or response.reason_phrase
    error = translate_error(IonworksError(payload, status_code=response.status_code), action)
    if isinstance(error, IonworksNotFound):
        error.message = _with_target(error.message, response)
    if isinstance(error, IonworksTransientError):
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return error


def call(action: str, fn: Callable[..., T], *args: Any,
         invalid: type[IonworksPrefectError] = IonworksRequestError, **kwargs: Any) -> T:
    """Run one client call, raising only typed errors; a transient failure is retried in place.

    Retries follow :func:`ionworks_prefect.retries.request_policy` (the task's options, else the settings),
    waiting at least a 429's Retry-After. A typed error raised inside ``fn`` (a nested :func:`call`) passes as
    it is, so a composite call never multiplies the budget. ``invalid`` is the error a client ``ValueError``
    (its refusal of the input) becomes.

    Example:
        >>> call("health check", client.health_check)
    """
    from .retries import request_policy

    policy = None
    retry = 0
    while True:
        try:
            return fn(*args, **kwargs)
        except IonworksPrefectError:
            raise
        except Exception as exc:  # noqa: BLE001 - every client failure leaves typed
            error = translate_error(exc, action) or unexpected_error(exc, action, invalid)
            if not isinstance(error, IonworksTransientError):
                raise error from exc
            policy = policy or request_policy()
            if retry >= policy.retries:
                error.attempts = retry + 1
                raise error from exc
            delay = policy.delay(retry, error.retry_after)
            retry += 1
            run_logger().warning("%s; retry %d of %d in %.1f s", error, retry, policy.retries, delay)
            time.sleep(delay)


async def acall(action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Async twin of :func:`call`: the blocking client call runs in the default worker-thread pool.

    Example:
        >>> await acall("get pipeline", client.pipeline.get, pipeline_id)
    """
    return await asyncio.to_thread(call, action, fn, *args, **kwargs)


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow or task run, else the package logger."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return _log
