"""The Ionworks HTTP contract as the official client (ionworks-api 0.38) reads it, and a monitor that holds every
sandbox answer in the test session to it.

:data:`ROUTES` names, for each sandbox route, the pydantic model the client parses its answer with (and the client
method that does), or, for the answers the client keeps as plain JSON, the keys its own code reads. The monitor
hooks the client's ``requests`` session (a response hook on every :class:`ionworks.Ionworks`) and the plugin's own
``httpx`` reads (``httpx.AsyncClient.send`` for URLs an Ionworks client was made for), and for every 2xx JSON answer:

- checks it against the route's model (each record of a list answer), and that its ``Content-Type`` is exactly
  ``application/json`` (the client parses nothing else);
- hands the caller the same JSON with each record wrapped in a mapping that notes every key code in
  ``ionworks_prefect/`` or ``flows/`` reads from it, so a plugin read of a key the model does not define (or, for
  plain-JSON answers, that the client's own code does not read) is a problem too.

Problems are collected, and the test that caused them fails (see ``tests/conftest.py``).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from ionworks.job import JobResponse
from ionworks.models import (
    CellInstance,
    CellMeasurement,
    CellMeasurementBundleResponse,
    CellSpecification,
    InitiateUploadResponse,
    ParameterizedModel,
    Project,
    Protocol,
    StepsAndCycles,
    Study,
)
from ionworks.pipeline import PipelineResponse, PipelineSubmissionResponse
from ionworks.simple_pipeline import SimplePipelineSubmissionResponse
from ionworks.simulation import SimulationResponse
from pydantic import BaseModel, ValidationError

#: Keys of a paged list answer the client reads besides its items (``models._parse_list_response``).
PAGE_KEYS = frozenset({"total"})
_ROOT = Path(__file__).resolve().parent.parent
#: Code whose reads of answer keys are checked: the plugin and the reference flows.
PLUGIN_DIRS = tuple(str(_ROOT / d) + "/" for d in ("ionworks_prefect", "flows"))


@dataclass(frozen=True)
class Route:
    """One route: what the client parses its 2xx answer into.

    ``model`` is the client's model of one record; ``envelope`` names the key a list answer nests its records
    under (``{envelope: [...], "total": N}``, or a bare array, as ``_parse_list_response`` accepts); ``many`` marks
    a bare array of records. Without a model, ``reads`` are the keys of a record the client's own code reads
    (``None``: a mapping keyed by data names, any key). ``where`` is the client method that parses it.
    """

    method: str
    template: str
    where: str
    model: Optional[type[BaseModel]] = None
    envelope: Optional[str] = None
    many: bool = False
    reads: Optional[frozenset[str]] = frozenset()
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def record_keys(self) -> Optional[frozenset[str]]:
        """Keys a plugin may read from one record: the model's fields (and aliases), else ``reads``."""
        if self.model is None:
            return self.reads
        names = set()
        for name, info in self.model.model_fields.items():
            names.add(name)
            if info.alias:
                names.add(info.alias)
        return frozenset(names)


def _route(method: str, template: str, where: str, model: Optional[type[BaseModel]] = None, **kw: Any) -> Route:
    return Route(method, template, where, model, **kw)


ROUTES: tuple[Route, ...] = (
    _route("GET", "/healthz", "Ionworks.health_check (plain JSON)"),
    _route("GET", "/users/me", "Ionworks.whoami (plain JSON; its docstring lists the keys)",
           reads=frozenset({"id", "email", "authorized_organization", "organizations"})),
    _route("GET", "/projects", "ProjectClient.list", Project, envelope="items"),
    _route("GET", "/projects/{project_id}", "ProjectClient.get", Project),
    _route("POST", "/projects", "ProjectClient.create", Project),
    _route("POST", "/cell_specifications", "CellSpecificationClient.create", CellSpecification),
    _route("GET", "/cell_specifications", "CellSpecificationClient.list", CellSpecification, envelope="items"),
    _route("GET", "/cell_specifications/{id}", "CellSpecificationClient.get", CellSpecification),
    _route("PATCH", "/cell_specifications/{id}", "CellSpecificationClient.update", CellSpecification),
    _route("POST", "/cell_specifications/{id}/cell_instances", "CellInstanceClient.create", CellInstance),
    _route("GET", "/cell_specifications/{id}/cell_instances", "CellInstanceClient.list", CellInstance,
           envelope="items"),
    _route("GET", "/cell_instances/{id}", "CellInstanceClient.get", CellInstance),
    _route("PATCH", "/cell_instances/{id}", "CellInstanceClient.update", CellInstance),
    _route("POST", "/cell_instances/{id}/cell_measurements/initiate-upload", "CellMeasurementClient._initiate_upload",
           InitiateUploadResponse),
    _route("POST", "/cell_measurements/{id}/confirm-upload", "CellMeasurementClient._confirm_upload",
           CellMeasurementBundleResponse),
    _route("GET", "/cell_measurements", "CellMeasurementClient.list_by_project", CellMeasurement, envelope="items"),
    _route("GET", "/cell_instances/{id}/cell_measurements", "CellMeasurementClient.list", CellMeasurement,
           envelope="items"),
    _route("GET", "/cell_measurements/{id}", "CellMeasurementClient.get / wait_for_processing", CellMeasurement),
    _route("GET", "/cell_measurements/{id}/steps_and_cycles", "CellMeasurementClient.steps_and_cycles",
           StepsAndCycles),
    _route("GET", "/cell_measurements/{id}/cycles", "CellMeasurementClient.cycles (plain JSON)",
           reads=frozenset({"cycles"})),
    _route("PATCH", "/cell_measurements/{id}", "CellMeasurementClient.update", CellMeasurement),
    _route("GET", "/jobs/", "JobClient.list", JobResponse, many=True),
    _route("POST", "/jobs/", "JobClient.create", JobResponse),
    _route("GET", "/jobs/{id}", "JobClient.get", JobResponse),
    _route("POST", "/jobs/{id}/cancel", "JobClient.cancel", JobResponse),
    _route("GET", "/jobs/{id}/metadata", "JobClient.get_metadata (plain JSON; pipeline._manifest_objectives)",
           reads=frozenset({"validation_plot_config", "validation_results"})),
    _route("GET", "/jobs/{id}/series/channels", "JobClient.get_series_channels (keyed by objective)", reads=None),
    _route("GET", "/jobs/{id}/series", "JobClient.get_series (keyed by channel)", reads=None),
    _route("GET", "/pipelines/datafits/{id}/plot_data", "JobClient.get_plot_data (plain JSON)",
           reads=frozenset({"traces"})),
    _route("POST", "/parameterized_models", "ParameterizedModelClient.create", ParameterizedModel),
    _route("POST", "/cells/{id}/parameterized_models", "ParameterizedModelClient.create", ParameterizedModel),
    _route("GET", "/parameterized_models", "ParameterizedModelClient.list", ParameterizedModel, envelope="items"),
    _route("GET", "/parameterized_models/{id}", "ParameterizedModelClient.get", ParameterizedModel),
    _route("GET", "/parameterized_models/{id}/parameter-values",
           "ParameterizedModelClient.get_parameter_values (keyed by parameter)", reads=None),
    _route("POST", "/pipelines", "PipelineClient.create", PipelineSubmissionResponse),
    _route("GET", "/pipelines", "PipelineClient.list", PipelineSubmissionResponse, envelope="pipelines"),
    _route("GET", "/pipelines/{id}", "PipelineClient.get", PipelineSubmissionResponse),
    _route("PATCH", "/pipelines/{id}", "PipelineClient.update", PipelineSubmissionResponse),
    _route("POST", "/pipelines/{id}/cancel", "PipelineClient.cancel", PipelineSubmissionResponse),
    _route("GET", "/pipelines/{id}/result", "PipelineClient.result", PipelineResponse),
    _route("GET", "/pipelines/{id}/elements", "PipelineResponse.element / PipelineClient._element_job_id "
           "(plain JSON; pipeline._with_progress_cost; updated_at, which the client does not read, is a field of "
           "each element in Ionworks' API reference)", many=True,
           reads=frozenset({"name", "job_id", "element_type", "progress", "updated_at"})),
    _route("POST", "/simple_pipelines", "SimplePipelineClient.create", SimplePipelineSubmissionResponse),
    _route("GET", "/simple_pipelines", "SimplePipelineClient.list", SimplePipelineSubmissionResponse,
           envelope="items"),
    _route("GET", "/simple_pipelines/{id}", "SimplePipelineClient.get", SimplePipelineSubmissionResponse),
    _route("PATCH", "/simple_pipelines/{id}", "SimplePipelineClient.update", SimplePipelineSubmissionResponse),
    _route("POST", "/simple_pipelines/{id}/cancel", "SimplePipelineClient.cancel", SimplePipelineSubmissionResponse),
    _route("POST", "/protocols/parse-to-template", "SimulationClient.protocol_batch (plain JSON)",
           reads=frozenset({"template_id"})),
    _route("POST", "/protocols/validate", "ProtocolClient.validate (plain JSON; its docstring lists the keys)",
           reads=frozenset({"valid", "error"})),
    _route("POST", "/protocols/input_references", "ProtocolClient.find_input_references (a list of names)"),
    _route("POST", "/protocols/convert", "ProtocolClient.convert (plain JSON)",
           reads=frozenset({"target", "primary", "assets"})),
    _route("POST", "/experiment_templates", "ProtocolClient.create", Protocol),
    _route("GET", "/experiment_templates", "ProtocolClient.list", Protocol, envelope="items"),
    _route("GET", "/experiment_templates/{id}", "ProtocolClient.get", Protocol),
    _route("PATCH", "/experiment_templates/{id}", "ProtocolClient.update", Protocol),
    _route("POST", "/simulations/with-template/batch", "SimulationClient.protocol_batch", SimulationResponse,
           many=True),
    _route("GET", "/simulations", "SimulationClient.list (plain JSON records)", envelope="simulations"),
    _route("GET", "/simulations/{id}", "SimulationClient.get (plain JSON; get_result, _poll_simulations)",
           reads=frozenset({"storage_folder", "simulation_data", "job_id", "metrics"})),
    _route("POST", "/simulations/statuses", "SimulationClient.get_statuses (plain JSON; its docstring lists the keys)",
           many=True, reads=frozenset({"simulation_id", "status", "error", "error_code", "updated_at"})),
    _route("GET", "/projects/{project_id}/studies", "StudyClient.list", Study, envelope="items"),
    _route("POST", "/projects/{project_id}/studies", "StudyClient.create", Study),
    _route("GET", "/projects/{project_id}/studies/{id}", "StudyClient.get", Study),
    _route("PATCH", "/projects/{project_id}/studies/{id}", "StudyClient.update", Study),
    _route("POST", "/projects/{project_id}/studies/{id}/simulations/{sid}", "StudyClient.assign_simulation"),
    _route("POST", "/projects/{project_id}/studies/{id}/measurements/{mid}", "StudyClient.assign_measurement"),
    _route("GET", "/projects/{project_id}/studies/{id}/measurements",
           "StudyClient.list_measurements (plain JSON; its docstring lists the keys)",
           reads=frozenset({"items", "count", "total"})),
)

#: Sandbox routes the client reads no JSON from: deletes, redirects to storage, storage itself, web pages.
NOT_JSON: frozenset[tuple[str, str]] = frozenset({
    ("DELETE", "/cell_specifications/{}"), ("DELETE", "/cell_instances/{}"), ("DELETE", "/cell_measurements/{}"),
    ("DELETE", "/pipelines/{}"), ("DELETE", "/simple_pipelines/{}"), ("DELETE", "/experiment_templates/{}"),
    ("DELETE", "/simulations/{}"), ("DELETE", "/projects/{}/studies/{}"),
    ("DELETE", "/projects/{}/studies/{}/simulations/{}"), ("DELETE", "/projects/{}/studies/{}/measurements/{}"),
    ("GET", "/cell_measurements/{}/time_series/download"), ("GET", "/cell_measurements/{}/steps/download"),
    ("GET", "/simulations/{}/time_series/download"), ("GET", "/simulations/{}/steps/download"),
    ("GET", "/storage/{}"), ("PUT", "/storage/{}"), ("GET", "/app/projects/{}/pipelines/{}"), ("GET", "/openapi.json"),
})


def shape(template: str) -> str:
    """A path template with its parameter names dropped: ``/pipelines/{id}`` -> ``/pipelines/{}``."""
    return re.sub(r"\{[^}]*\}", "{}", template)


def route_for(method: str, path: str) -> Route | None:
    """The route a request path falls under (the most specific template wins), or None."""
    found = [r for r in ROUTES if r.method == method.upper() and r.pattern.match(path)]
    return max(found, key=lambda r: r.template.count("/") - r.template.count("{")) if found else None


def _records(route: Route, body: Any) -> tuple[list[Any], str | None]:
    """The records of an answer and a problem with its shape (None when it has the shape the client reads)."""
    if route.envelope is not None:
        if isinstance(body, dict) and isinstance(body.get(route.envelope), list):
            return body[route.envelope], None
        if isinstance(body, list):
            return body, None
        return [], f"expected {{'{route.envelope}': [...]}} or an array"
    if route.many:
        return (body, None) if isinstance(body, list) else ([], "expected an array")
    if route.model is not None or route.reads:
        return ([body], None) if isinstance(body, dict) else ([], "expected an object")
    return [], None


def check_answer(method: str, path: str, content_type: str | None, body: Any) -> list[str]:
    """Problems of one 2xx JSON answer against the client's reading of its route (empty when it fits).

    Example:
        >>> check_answer("GET", "/pipelines/p1", "application/json", {"id": "p1"})
        ["GET /pipelines/p1 does not fit PipelineSubmissionResponse: name: Field required; ..."]
    """
    route = route_for(method, path)
    where = f"{method} {path}"
    if route is None:
        return [f"{where}: no client contract is known for this route (add it to tests/client_contract.py)"]
    problems = []
    if content_type != "application/json":
        problems.append(f"{where}: Content-Type {content_type!r}; {route.where} parses only 'application/json'")
    records, bad_shape = _records(route, body)
    if bad_shape:
        problems.append(f"{where}: {bad_shape}, as {route.where} reads it")
    if route.model is None:
        return problems
    for index, record in enumerate(records):
        try:
            route.model.model_validate(record)
        except ValidationError as exc:
            at = f"[{index}] " if route.envelope or route.many else ""
            errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            problems.append(f"{where}: {at}does not fit {route.model.__name__} ({route.where}): {errors}")
    return problems


def _plugin_caller(depth: int) -> str | None:
    """``file:line`` of the frame ``depth`` levels up when it is plugin code, else None."""
    frame = sys._getframe(depth)
    filename = frame.f_code.co_filename
    return f"{filename}:{frame.f_lineno}" if filename.startswith(PLUGIN_DIRS) else None


class ReadKeys(dict):
    """A JSON object that notes every key plugin code reads from it which ``allowed`` does not hold.

    It copies and pickles as a plain dict, so nothing downstream keeps the wrapper.
    """

    __slots__ = ("_allowed", "_label", "_note")

    def __init__(self, data: dict[str, Any], allowed: frozenset[str], label: str, note: Any) -> None:
        super().__init__(data)
        self._allowed, self._label, self._note = allowed, label, note

    def _check(self, key: Any) -> None:
        if key not in self._allowed and (caller := _plugin_caller(3)) is not None:
            self._note(f"{caller} reads {key!r} from {self._label}, a key the client does not define or read there")

    def __getitem__(self, key: Any) -> Any:
        self._check(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self._check(key)
        return super().__contains__(key)

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (dict(self),)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return copy.deepcopy(dict(self), memo)


def wrap_answer(method: str, path: str, body: Any, note: Any) -> Any:
    """``body`` with its records (and a list answer's envelope) wrapped in :class:`ReadKeys`."""
    route = route_for(method, path)
    if route is None or route.record_keys is None:
        return body
    label = f"the answer of {route.method} {route.template}"
    keys = route.record_keys

    def record(item: Any) -> Any:
        return ReadKeys(item, keys, label, note) if isinstance(item, dict) else item

    if route.envelope is not None:
        if isinstance(body, list):
            return [record(item) for item in body]
        if isinstance(body, dict) and isinstance(body.get(route.envelope), list):
            outer = {**body, route.envelope: [record(item) for item in body[route.envelope]]}
            return ReadKeys(outer, PAGE_KEYS | {route.envelope, "count"}, label, note)
        return body
    if route.many:
        return [record(item) for item in body] if isinstance(body, list) else body
    return record(body)


class ContractMonitor:
    """Checks the sandbox's answers to the official client and to the plugin's ``httpx`` reads (see module doc)."""

    def __init__(self) -> None:
        self.bases: set[str] = set()
        self._problems: list[str] = []
        self._lock = threading.Lock()
        self.checked = 0
        self.routes_seen: set[str] = set()

    def note(self, problem: str) -> None:
        with self._lock:
            if problem not in self._problems:
                self._problems.append(problem)

    def take(self) -> list[str]:
        """The problems noted since the last call."""
        with self._lock:
            problems, self._problems = self._problems, []
        return problems

    def _path(self, url: str) -> str | None:
        for base in self.bases:
            if url.startswith(base) and (len(url) == len(base) or url[len(base)] in "/?"):
                return urlsplit(url[len(base):] or "/").path or "/"
        return None

    def answer(self, method: str, url: str, status: int, content_type: str | None, content: Callable[[], bytes]) -> Any:
        """Check one answer; returns its JSON wrapped for key tracking, or None when it is not a checked answer."""
        path = self._path(url)
        if path is None or method.upper() == "DELETE" or not 200 <= status < 300:
            return None  # the client reads nothing from a DELETE answer
        if not (content_type or "").startswith("application/json"):
            return None
        raw = content()
        if not raw:
            return None
        body = json.loads(raw)
        for problem in check_answer(method, path, content_type, body):
            self.note(problem)
        with self._lock:
            self.checked += 1
            if (route := route_for(method, path)) is not None:
                self.routes_seen.add(f"{route.method} {route.template}")
        return wrap_answer(method, path, body, self.note)

    @contextmanager
    def installed(self) -> Iterator[ContractMonitor]:
        """Hook every Ionworks client made while active, and ``httpx.AsyncClient.send`` for their URLs."""
        import httpx
        from ionworks.client import Ionworks

        monitor = self
        original_init = Ionworks.__init__
        original_send = httpx.AsyncClient.send

        def on_response(response: Any, *args: Any, **kwargs: Any) -> Any:
            wrapped = monitor.answer(response.request.method, response.url, response.status_code,
                                     response.headers.get("Content-Type"), lambda: response.content)
            if wrapped is not None:
                response.json = lambda **_: wrapped
            return response

        def init(self: Ionworks, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            monitor.bases.add(self.api_url)
            self.session.hooks["response"].append(on_response)

        async def send(self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
            response = await original_send(self, request, *args, **kwargs)
            final = response.request  # the last request, after any redirect
            if monitor._path(str(final.url)) is not None and not kwargs.get("stream"):
                wrapped = monitor.answer(final.method, str(final.url), response.status_code,
                                         response.headers.get("Content-Type"), lambda: response.content)
                if wrapped is not None:
                    response.json = lambda **_: wrapped  # type: ignore[method-assign]
            return response

        Ionworks.__init__ = init  # type: ignore[method-assign]
        httpx.AsyncClient.send = send  # type: ignore[method-assign]
        try:
            yield self
        finally:
            Ionworks.__init__ = original_init  # type: ignore[method-assign]
            httpx.AsyncClient.send = original_send  # type: ignore[method-assign]
