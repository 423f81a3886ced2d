"""Errors in the body shape the official client parses: ``{"error_code", "message", "detail"}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error answered as ``{"error_code": code, "message": message, "detail": detail}``.

    Example:
        >>> raise ApiError(404, "NOT_FOUND", "Cell measurement 'x' not found")
    """

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"error_code": self.code, "message": self.message, "detail": self.detail}


def not_found(kind: str, id_: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{kind} '{id_}' not found")


def bad_request(message: str, detail: Any = None) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message, detail)


def conflict(message: str, existing_id: str) -> ApiError:
    return ApiError(409, "CONFLICT", message, {"existing_id": existing_id})


def unprocessable(message: str, detail: Any = None) -> ApiError:
    return ApiError(422, "UNPROCESSABLE_ENTITY", message, detail)
