"""The sandbox FastAPI application."""

from __future__ import annotations

import importlib
import json
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import authenticate
from .errors import ApiError
from .jobs import JobRunner
from .middleware import RequestBodyMiddleware
from .request_log import RequestLogMiddleware
from .settings import SandboxSettings
from .storage import Storage
from .store import Store, json_safe


class SafeJSONResponse(JSONResponse):
    """JSON with NaN/inf as ``null`` and exactly ``Content-Type: application/json`` (the client needs both)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(json_safe(content), separators=(",", ":"), default=str).encode()


def _routers() -> list[Any]:
    from .routes import (
        app_pages,
        basics,
        cells,
        jobs,
        measurements,
        models,
        pipelines,
        protocols,
        simple_pipelines,
        simulations,
        storage_routes,
        studies,
    )

    return [
        basics.router,
        storage_routes.router,
        cells.router,
        measurements.router,
        jobs.router,
        pipelines.router,
        simple_pipelines.router,
        models.router,
        protocols.router,
        simulations.router,
        studies.router,
        app_pages.router,
    ]


def create_app(settings: SandboxSettings) -> FastAPI:
    """Build the application; resources open on startup and close on shutdown.

    The pipeline checks (and PyBaMM under them) are imported in the background at startup, so the first
    submission does not pay for the import.

    Example:
        >>> app = create_app(SandboxSettings(Path("data"), ("dev-key",), "http://127.0.0.1:8765"))
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.data_dir / "sandbox.db")
        app.state.store = store
        app.state.storage = Storage.in_data_dir(settings.data_dir, settings.public_url, settings.download_url_ttl_s)
        _ensure_organizations(store, settings)
        app.state.jobs = JobRunner(store, settings.data_dir, settings.workers)
        app.state.jobs.start()
        threading.Thread(target=importlib.import_module, args=(f"{__package__}.pipeline_checks",), daemon=True).start()
        try:
            yield
        finally:
            app.state.jobs.stop()
            store.close()

    app = FastAPI(
        title="Ionworks sandbox",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.add_middleware(RequestBodyMiddleware, max_bytes=settings.max_body_bytes)
    if settings.request_log is not None:
        app.add_middleware(RequestLogMiddleware, path=settings.request_log)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return SafeJSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
        )
        return SafeJSONResponse(
            {"error_code": "VALIDATION_ERROR", "message": f"Invalid request: {problems}", "detail": json_safe(exc.errors())},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return SafeJSONResponse({"error_code": code, "message": str(exc.detail), "detail": None}, status_code=exc.status_code)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authenticate)])
    async def _described() -> dict[str, Any]:
        """The API description, for callers holding a key (there is no unauthenticated docs page)."""
        return app.openapi()

    for router in _routers():
        app.include_router(router)
    return app


def _ensure_organizations(store: Store, settings: SandboxSettings) -> None:
    """Give every configured organization a record and a default project (kept across restarts)."""
    for org in settings.organizations.values():
        if store.find("organization", org.id) is None:
            store.insert("organization", {"name": org.name}, org_id=org.id, id=org.id)
        if store.find("project", org.default_project_id) is None:
            store.insert(
                "project",
                {"name": "Default project", "organization_id": org.id, "description": "Created by the sandbox"},
                org_id=org.id,
                project_id=org.default_project_id,
                id=org.default_project_id,
            )
