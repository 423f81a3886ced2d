"""Every public task, flow and block documents its arguments, result, errors and a whole-flow example.

Google-style sections are read from each docstring: tasks and flows need ``Args:``, ``Returns:``, ``Raises:`` and
``Examples:``; blocks need ``Attributes:`` (or ``Args:``), ``Raises:`` and ``Examples:``. The documented names must
be the real parameters or fields, each raised name a real exception, and the examples fenced ``python`` code that
parses, imports only names the package has, and defines a ``@flow``.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import textwrap

import pytest
from prefect import Flow, Task
from prefect.blocks.core import Block

import ionworks_prefect
import ionworks_prefect.flows

SECTION = re.compile(r"^(Args|Attributes|Returns|Raises|Examples):[ \t]*$", re.M)
ENTRY = re.compile(r"^ {4}(\*{0,2}[A-Za-z_][\w.]*)(?: \([^)]*\))?:", re.M)
FENCE = re.compile(r"^ *```python\n(.*?)^ *```", re.M | re.S)


def public_objects() -> list[tuple[str, object]]:
    found = []
    for module in (ionworks_prefect, ionworks_prefect.flows):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, (Task, Flow)) or (inspect.isclass(obj) and issubclass(obj, Block)):
                found.append((f"{module.__name__}.{name}", obj))
    return found


PUBLIC = public_objects()


def sections(doc: str) -> dict[str, str]:
    """Section name -> its body, for the top-level Google-style sections of a cleaned docstring."""
    marks = list(SECTION.finditer(doc))
    return {m[1]: doc[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(doc)] for i, m in enumerate(marks)}


def docstring(obj: object) -> str:
    target = obj.fn if isinstance(obj, (Task, Flow)) else obj
    return inspect.cleandoc(target.__doc__ or "")


def exception_named(name: str, home: str) -> object:
    """The exception a ``Raises:`` entry names: dotted (``pydantic.ValidationError``), the package's, or builtin."""
    if "." in name:
        module, _, attr = name.rpartition(".")
        return getattr(importlib.import_module(module), attr, None)
    for namespace in (importlib.import_module(home), ionworks_prefect, builtins):
        if hasattr(namespace, name):
            return getattr(namespace, name)
    return None


def test_the_public_surface_is_found():
    names = {name.rsplit(".", 1)[1] for name, _ in PUBLIC}
    assert {"IonworksCredentials", "IonworksPipeline", "run_pipeline", "doe_sweep", "cycler_watcher"} <= names


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_docstring_has_the_sections(name, obj):
    found = sections(docstring(obj))
    if isinstance(obj, (Task, Flow)):
        missing = [s for s in ("Args", "Returns", "Raises", "Examples") if s not in found]
    else:
        missing = [s for s in ("Raises", "Examples") if s not in found]
        missing += [] if {"Args", "Attributes"} & found.keys() else ["Attributes"]
    assert not missing, f"{name} lacks {', '.join(missing)}"


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_documented_arguments_are_the_real_ones(name, obj):
    found = sections(docstring(obj))
    body = found.get("Args") or found.get("Attributes") or ""
    documented = [entry.lstrip("*") for entry in ENTRY.findall(body)]
    if isinstance(obj, (Task, Flow)):
        real = list(inspect.signature(obj.fn).parameters)
    else:
        real = list(obj.model_fields)
    assert sorted(documented) == sorted(real), f"{name}: documents {documented}, has {real}"


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_raised_names_are_exceptions(name, obj):
    raised = ENTRY.findall(sections(docstring(obj)).get("Raises", ""))
    assert raised, f"{name} names no exception under Raises"
    home = (obj.fn if isinstance(obj, (Task, Flow)) else obj).__module__
    for entry in raised:
        exc = exception_named(entry, home)
        assert inspect.isclass(exc) and issubclass(exc, BaseException), f"{name}: {entry} is not an exception"


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_examples_are_whole_flows_that_parse_and_import_real_names(name, obj):
    blocks = FENCE.findall(sections(docstring(obj)).get("Examples", ""))
    assert blocks, f"{name}: Examples holds no ```python block"
    trees = [ast.parse(textwrap.dedent(block)) for block in blocks]
    flows = [d for tree in trees for d in ast.walk(tree) if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))
             and any(isinstance(x, ast.Name) and x.id == "flow" for x in d.decorator_list)]
    assert flows, f"{name}: no example defines a @flow"
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ionworks_prefect"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{name}: {node.module} has no {alias.name}"
