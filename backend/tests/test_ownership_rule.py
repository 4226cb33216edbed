"""STYLE.md's "crud: ownership in exactly one place", read off the source: outside
app/crud/ (and models/, which defines the columns, and alembic/, which migrates them) no
module compares or filters on an owner column.

An owner column is an `owner_id` or `user_id` of a table. Flagged, anywhere else:
- the column itself, `Agent.owner_id` (in `==`, `col(...)`, `.where(...)`, `.in_(...)`,
  `order_by`, ...): outside crud a table's owner column has no business but a query;
- a comparison with any `.owner_id` / `.user_id`, `thread.owner_id != user.id` included:
  deciding in Python whose a row is, is a visibility rule too;
- `filter_by(owner_id=...)` and `getattr(Agent, "owner_id")`.
Building a row with `owner_id=user.id`, or reading `run.owner_id` to copy it, is no filter.
"""

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import TypeGuard

import pytest

APP = Path(__file__).resolve().parents[1] / "app"
OWNER_COLUMNS = frozenset({"owner_id", "user_id"})
# Where owner columns may be compared: the one place that scopes rows, the place that
# defines them, and the migrations that create them.
ALLOWED = ("crud", "models", "alembic")


def table_classes() -> frozenset[str]:
    """The names of the classes declared with `table=True` under app/ (the catalog's too)."""
    names = set()
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef) and any(
                keyword.arg == "table"
                and isinstance(keyword.value, ast.Constant)
                and keyword.value.value is True
                for keyword in node.keywords
            ):
                names.add(node.name)
    return frozenset(names)


TABLES = table_classes()


def _root_name(node: ast.expr) -> str | None:
    """`Agent` for `Agent`, `models.Agent` or `Agent.__table__.c`: the last name that
    could be a table class, walking down the attribute chain."""
    while isinstance(node, ast.Attribute):
        if node.attr in TABLES:
            return node.attr
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _table_aliases(tree: ast.Module) -> set[str]:
    """Local names bound to table classes (`from app.models.agent import Agent as A`)."""
    aliases = set(TABLES)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            aliases.update(a.asname for a in node.names if a.asname and a.name in TABLES)
    return aliases


def _is_owner_attribute(node: ast.expr) -> TypeGuard[ast.Attribute]:
    return isinstance(node, ast.Attribute) and node.attr in OWNER_COLUMNS


def violations_in(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each use of an owner column as a filter in `source`."""
    tree = ast.parse(source)
    tables = _table_aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in OWNER_COLUMNS:
            root = _root_name(node.value)
            if root in tables:
                yield node.lineno, f"{root}.{node.attr}"
        elif isinstance(node, ast.Compare):
            # Table columns are reported above; here, rows' values compared in Python.
            for operand in (node.left, *node.comparators):
                if _is_owner_attribute(operand) and _root_name(operand.value) not in tables:
                    yield node.lineno, f"a comparison with .{operand.attr}"
        elif isinstance(node, ast.Call):
            function = node.func
            name = (
                function.attr
                if isinstance(function, ast.Attribute)
                else function.id
                if isinstance(function, ast.Name)
                else None
            )
            if name == "filter_by":
                for keyword in node.keywords:
                    if keyword.arg in OWNER_COLUMNS:
                        yield node.lineno, f"filter_by({keyword.arg}=...)"
            elif (
                name == "getattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in OWNER_COLUMNS
                and _root_name(node.args[0]) in tables
            ):
                yield node.lineno, f"getattr(..., {node.args[1].value!r})"


def checked_modules() -> Iterator[Path]:
    for path in sorted(APP.rglob("*.py")):
        if path.relative_to(APP).parts[0] not in ALLOWED:
            yield path


def test_owner_columns_are_compared_only_in_crud() -> None:
    found = [
        f"{path.relative_to(APP.parent)}:{line} {what}"
        for path in checked_modules()
        for line, what in sorted(violations_in(path.read_text()))
    ]
    assert found == [], (
        "Owner filters and visibility rules belong in app/crud/ (a `_visible_to` per "
        "entity; STYLE.md, 'crud: ownership in exactly one place'):\n" + "\n".join(found)
    )


def test_the_tables_with_owner_columns_are_known() -> None:
    # If this fails, table_classes() no longer finds the tables and the rule checks nothing.
    assert {"Agent", "Thread", "Run", "LoginSession", "UsageEntry"} <= TABLES


@pytest.mark.parametrize(
    "source",
    [
        "statement.where(Agent.owner_id == user.id)",
        "select(Thread).where(col(Thread.owner_id) == user.id)",
        "select(Run).where(col(Run.owner_id).in_(ids))",
        "update(LoginSession).where(LoginSession.user_id != user.id)",
        "from app.models.agent import Agent as A\nq = select(A).where(A.owner_id == 1)",
        "q = select(models.Agent).where(models.Agent.owner_id == 1)",
        "q = select(Agent).where(Agent.__table__.c.owner_id == 1)",
        "q = select(Agent).order_by(Agent.owner_id)",
        "q = session.query(Agent).filter_by(owner_id=user.id)",
        "column = getattr(Thread, 'owner_id')",
        "if thread.owner_id != user.id:\n    raise NotFoundError()",
        "visible = user.id == agent.owner_id or user.is_superuser",
        "mine = [e for e in entries if e.user_id in ids]",
    ],
)
def test_the_rule_catches_each_form(source: str) -> None:
    assert list(violations_in(source)) != []


@pytest.mark.parametrize(
    "source",
    [
        "thread = Thread(owner_id=user.id, agent_id=agent.id)",
        "agent = Agent.model_validate(agent_in, update={'owner_id': user.id})",
        "entry = UsageEntry(user_id=run.owner_id, run_id=run.id)",
        "user = user_crud.get_user(session=session, user_id=login_session.user_id)",
        "token = create_access_token(user_id=user.id, session_id=login_session.id)",
    ],
)
def test_the_rule_lets_rows_be_built_and_read(source: str) -> None:
    assert list(violations_in(source)) == []
