"""The exception hierarchy has one home, :mod:`sqsbus.errors`, and its docstring draws it.

* The tree in the docstring matches the classes: every class once, under its first base,
  with its other bases after "also" (so the drawing cannot drift).
* No other module of sqsbus defines an exception class (read with :mod:`ast`), apart from
  the ones listed in :data:`ELSEWHERE` with the reason.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqsbus.errors

PACKAGE: Final = Path(sqsbus.errors.__file__).resolve().parent

#: Exception classes defined outside sqsbus.errors, by module, and why.
ELSEWHERE: Final = {
    # The embedded endpoint stands alone (test_layers: it imports nothing else of sqsbus).
    "sqsbus.local.endpoint": {"LocalEndpointError", "MotoNotInstalledError", "_ExitedEarly"},
    # Tooling, not the library's API (test_layers: the runtime never imports it).
    "sqsbus.testing._http": {"HttpError"},
    "sqsbus.testing.children": {"ChildFailed"},
    "sqsbus.demo.runner": {"DemoFailed"},
    "sqsbus.demo.metrics": {"MetricsUnavailable"},
    "sqsbus.demo.app": {"FlakyTaskError"},
    # Control flow inside `sqsbus top`: a request dropped once the watcher is closed.
    "sqsbus.admin.top": {"_Closed"},
}

#: A line of the drawn tree: box-drawing prefix, class name, optional "also" bases.
_TREE_LINE: Final = re.compile(
    r"^(?P<prefix>[ │├└─]*)(?P<name>[A-Z]\w*)(?:\s+also\s+(?P<also>.+))?$"
)


@dataclass(frozen=True)
class Drawn:
    name: str
    parent: str | None
    also: tuple[str, ...]


def drawn_tree(docstring: str) -> list[Drawn]:
    """The classes of the ``::`` block that starts with ``Exception``, in drawing order."""
    lines = docstring.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Exception")
    indent = len(lines[start]) - len(lines[start].lstrip())
    stack: list[str] = []
    drawn: list[Drawn] = []
    for line in lines[start:]:
        if not line.strip():
            break
        match = _TREE_LINE.match(line[indent:].rstrip())
        assert match, f"not a line of the tree: {line!r}"
        depth, rest = divmod(len(match["prefix"]), 4)
        assert rest == 0 and depth <= len(stack), f"misaligned: {line!r}"
        del stack[depth:]
        also = tuple(name.strip() for name in (match["also"] or "").split(",") if name.strip())
        drawn.append(Drawn(match["name"], stack[-1] if stack else None, also))
        stack.append(match["name"])
    return drawn


def exception_classes() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(sqsbus.errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == sqsbus.errors.__name__
    }


def mismatches(drawn: list[Drawn], classes: dict[str, type[BaseException]]) -> list[str]:
    """How the drawn tree differs from ``classes`` (empty when it matches)."""
    problems = []
    if not drawn or drawn[0] != Drawn("Exception", None, ()):
        problems.append("the tree does not start with Exception")
    names = [entry.name for entry in drawn[1:]]
    problems += [f"{name} drawn twice" for name in sorted(set(names)) if names.count(name) > 1]
    problems += [f"{name} not drawn" for name in sorted(set(classes) - set(names))]
    problems += [f"{name} drawn but not defined" for name in sorted(set(names) - set(classes))]
    for entry in drawn[1:]:
        if entry.name in classes:
            bases = [base.__name__ for base in classes[entry.name].__bases__]
            if (entry.parent, entry.also) != (bases[0], tuple(bases[1:])):
                problems.append(
                    f"{entry.name} drawn under {entry.parent} also {entry.also}, "
                    f"defined with bases {bases}"
                )
    return problems


def test_the_docstring_draws_the_real_hierarchy() -> None:
    assert sqsbus.errors.__doc__
    assert mismatches(drawn_tree(sqsbus.errors.__doc__), exception_classes()) == []


def test_a_drifted_drawing_is_caught() -> None:
    drifted = """Errors::

    Exception
    └── SQSBusError
        ├── DeliveryError
        ├── PublishBatchError
        ├── ConfigurationError
        └── Gone
"""
    classes = {
        cls.__name__: cls
        for cls in (
            sqsbus.errors.SQSBusError,
            sqsbus.errors.DeliveryError,
            sqsbus.errors.PublishBatchError,
            sqsbus.errors.ConfigurationError,
            sqsbus.errors.TransientError,
        )
    }
    assert mismatches(drawn_tree(drifted), classes) == [
        "TransientError not drawn",
        "Gone drawn but not defined",
        "PublishBatchError drawn under SQSBusError also (), defined with bases ['DeliveryError']",
        "ConfigurationError drawn under SQSBusError also (), defined with bases "
        "['SQSBusError', 'ValueError']",
    ]


def exceptions_defined(root: Path) -> dict[str, set[str]]:
    """Per module under ``root``, the classes deriving (directly or not) from an exception.

    A base counts as an exception when it is a built-in one, a class of sqsbus.errors, a
    class found by this scan, or a name ending in Error or Exception (imported ones).
    """
    known = {name for name, value in vars(builtins).items() if inspect.isclass(value)}
    known = {name for name in known if issubclass(getattr(builtins, name), BaseException)}
    known |= set(exception_classes())
    classes: list[tuple[str, str, set[str]]] = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(base).rpartition(".")[2] for base in node.bases}
                classes.append((module, node.name, bases))
    found: dict[str, set[str]] = {}
    changed = True
    while changed:  # subclasses of subclasses found in other modules
        changed = False
        for module, name, bases in classes:
            if name in found.get(module, set()):
                continue
            if bases & known or any(b.endswith(("Error", "Exception")) for b in bases):
                found.setdefault(module, set()).add(name)
                known.add(name)
                changed = True
    return found


def test_no_other_module_defines_an_exception() -> None:
    found = exceptions_defined(PACKAGE)
    found.pop("sqsbus.errors", None)
    assert found == ELSEWHERE


def test_the_scan_finds_exceptions_however_they_derive(tmp_path: Path) -> None:
    root = tmp_path / "sqsbus"
    (root / "engine").mkdir(parents=True)
    (root / "engine" / "a.py").write_text(
        "from sqsbus.errors import TransientError\n"
        "class Lost(TransientError): pass\n"
        "class Plain: pass\n"
    )
    (root / "b.py").write_text(
        "import botocore.exceptions\n"
        "class Wrapped(botocore.exceptions.ClientError): pass\n"
        "class Deeper(Lost): pass\n"
        "class Builtin(LookupError): pass\n"
    )
    assert exceptions_defined(root) == {
        "sqsbus.engine.a": {"Lost"},
        "sqsbus.b": {"Wrapped", "Deeper", "Builtin"},
    }
