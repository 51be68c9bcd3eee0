"""The fronts call the service's public verbs only.

The CLI, the campaign commands, ``top``, the control socket, the HTTP app, the demo,
the report and the composition root are fronts over
:class:`~dispatcher.service.Dispatcher`. This test reads their source with :mod:`ast`
(nothing is imported or run) and fails if one of them reaches past the service's
verbs on a dispatcher object:

- an attribute among :data:`INTERNALS` (the store, the channel, the desks, the
  delivery engine's text desk, the event bus), or any attribute whose name starts
  with ``_``, read, written or called, also through ``getattr``/``setattr`` with a
  literal name.

A dispatcher object is, within one function (or the module's top level): a
parameter or variable annotated ``Dispatcher`` (``Dispatcher | None`` too), a name
bound to ``Dispatcher(...)``, ``Dispatcher.from_config(...)`` or ``serving(...)``
(also by ``async with ... as``), and ``self.<name>`` where a method of the class
stores such an object in ``self.<name>`` or the class annotates ``<name>: Dispatcher``.
Configuration and time (``d.config``, ``d.clock``) are the service's public
attributes and allowed.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import dispatcher as package

PACKAGE = Path(package.__file__).resolve().parent
FRONTS = (
    "cli",
    "control",
    "web",
    "mailbox",
    "compose.py",
)
"""The fronts, as paths in the package (a folder: every module in it)."""
INTERNALS = frozenset(
    {"store", "channel", "mailer", "campaigns", "calls", "emails", "automations", "texts", "bus"}
)
"""What the service holds and no front may touch."""
SERVICE = "Dispatcher"
MAKERS = frozenset({"Dispatcher", "from_config", "serving"})
"""Calls that give a dispatcher object."""


@dataclass(frozen=True, slots=True)
class Reach:
    path: str
    line: int
    code: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code}"


def _names(annotation: ast.expr | None) -> bool:
    """Is ``annotation`` the service's type (``Dispatcher``, ``x.Dispatcher``,
    ``"Dispatcher"``, or one side of a ``|``)?"""
    match annotation:
        case ast.Name(id=name) | ast.Attribute(attr=name):
            return name == SERVICE
        case ast.Constant(value=str(text)):
            return _names(ast.parse(text, mode="eval").body)
        case ast.BinOp(left=left, op=ast.BitOr(), right=right):
            return _names(left) or _names(right)
    return False


def _makes(value: ast.expr | None) -> bool:
    """Does ``value`` give a dispatcher object (a call of one of :data:`MAKERS`)?"""
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    return name in MAKERS


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``scope`` outside the functions and classes nested in it."""
    for child in ast.iter_child_nodes(scope):
        yield child
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from _own_nodes(child)


def _bound(scope: ast.AST) -> set[str]:
    """The names that hold a dispatcher object in ``scope``."""
    names: set[str] = set()
    if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
        a = scope.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg is not None and _names(arg.annotation):
                names.add(arg.arg)
    for node in _own_nodes(scope):
        match node:
            case ast.AnnAssign(target=ast.Name(id=name), annotation=annotation, value=value):
                if _names(annotation) or _makes(value):
                    names.add(name)
            case ast.Assign(targets=targets, value=value) if _makes(value):
                names.update(t.id for t in targets if isinstance(t, ast.Name))
            case ast.withitem(context_expr=value, optional_vars=ast.Name(id=name)):
                if _makes(value):
                    names.add(name)
    return names


def _held_by_self(cls: ast.ClassDef) -> set[str]:
    """The attributes of ``self`` that hold a dispatcher object in ``cls``."""
    held: set[str] = set()
    for node in cls.body:
        match node:
            case ast.AnnAssign(target=ast.Name(id=name), annotation=annotation):
                if _names(annotation):
                    held.add(name)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            local = _bound(node)
            for inner in _own_nodes(node):
                if not isinstance(inner, ast.Assign | ast.AnnAssign):
                    continue
                value = inner.value
                holds = _makes(value) or (isinstance(value, ast.Name) and value.id in local)
                targets = inner.targets if isinstance(inner, ast.Assign) else [inner.target]
                for target in targets:
                    if holds and _is_self_attribute(target):
                        assert isinstance(target, ast.Attribute)
                        held.add(target.attr)
    return held


def _is_self_attribute(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (node.value.id == "self")
    )


class _Checker:
    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self.reaches: list[Reach] = []
        self.uses = 0  # attributes read on a dispatcher object: the check sees the fronts

    def scope(self, scope: ast.AST, names: set[str], held: set[str]) -> None:
        names = names | _bound(scope)
        for node in _own_nodes(scope):
            if isinstance(node, ast.ClassDef):
                self.scope(node, names, _held_by_self(node))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.scope(node, names, held)
            else:
                self.node(node, names, held)

    def node(self, node: ast.AST, names: set[str], held: set[str]) -> None:
        def is_service(expr: ast.expr) -> bool:
            if isinstance(expr, ast.Name):
                return expr.id in names
            return (
                _is_self_attribute(expr) and isinstance(expr, ast.Attribute) and (expr.attr in held)
            )

        attr: str | None = None
        if isinstance(node, ast.Attribute) and is_service(node.value):
            attr = node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
            and len(node.args) >= 2
            and is_service(node.args[0])
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            attr = node.args[1].value
        if attr is None:
            return
        self.uses += 1
        if attr in INTERNALS or attr.startswith("_"):
            code = ast.get_source_segment(self.source, node) or attr
            self.reaches.append(Reach(self.path, getattr(node, "lineno", 0), code))


def check(path: str, source: str) -> _Checker:
    """Every reach past the service's verbs in one front's ``source``."""
    checker = _Checker(path, source)
    checker.scope(ast.parse(source, filename=path), set(), set())
    return checker


def front_files() -> list[Path]:
    files: list[Path] = []
    for name in FRONTS:
        path = PACKAGE / name
        assert path.exists(), f"the front {name} has moved: update FRONTS"
        files.extend(sorted(path.glob("*.py")) if path.is_dir() else [path])
    return files


def test_no_front_reaches_past_the_service_verbs() -> None:
    reaches: list[Reach] = []
    uses: dict[str, int] = {}
    for path in front_files():
        name = path.relative_to(PACKAGE).as_posix()
        checker = check(name, path.read_text(encoding="utf-8"))
        reaches.extend(checker.reaches)
        uses[name] = checker.uses
    assert not reaches, "fronts reach past the service's verbs:\n" + "\n".join(map(str, reaches))
    # The check sees the fronts that hold the service (it is not blind to them).
    held = ("web/app.py", "cli/demo.py", "control/protocol.py", "control/campaign_commands.py")
    for name in held:
        assert uses[name] > 0, name


@pytest.mark.parametrize(
    ("source", "reached"),
    [
        ("async def f(d: Dispatcher) -> None:\n    await d.store.get('x')", "d.store"),
        ("def f(d: 'Dispatcher | None') -> None:\n    d.campaigns.view", "d.campaigns"),
        ("def f(d: Dispatcher) -> None:\n    d._queues", "d._queues"),
        ("def f(d: Dispatcher) -> None:\n    getattr(d, 'bus')", "getattr(d, 'bus')"),
        ("d = Dispatcher.from_config(c)\nd.texts.stop()", "d.texts"),
        ("async def f(c):\n    async with serving(c) as s:\n        s.calls", "s.calls"),
        (
            """
            class App:
                def __init__(self, dispatcher: Dispatcher) -> None:
                    self._dispatcher = dispatcher

                async def get(self) -> None:
                    await self._dispatcher.automations.add({})
            """,
            "self._dispatcher.automations",
        ),
        (
            "class App:\n    service: Dispatcher\n    def f(self):\n        self.service.channel",
            "self.service.channel",
        ),
    ],
)
def test_the_check_finds_each_kind_of_reach(source: str, reached: str) -> None:
    reaches = check("example.py", textwrap.dedent(source)).reaches
    assert [r.code for r in reaches] == [reached]


def test_the_check_allows_the_verbs_and_other_objects() -> None:
    source = """
        async def f(d: Dispatcher, view: StatusView) -> None:
            await d.campaign("c1")
            d.config.http.listen, d.clock.now()
            view.calls, view._private
            other = make()
            other.store
    """
    checker = check("example.py", textwrap.dedent(source))
    assert checker.reaches == []
    assert checker.uses == 3
