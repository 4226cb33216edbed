"""Citations of assistant messages; readable by whoever may read the messages."""

from typing import Any

from sqlalchemy import JSON, Label, RowMapping
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import col, select

from app.models.citation import Citation

# The column of a message's row that holds its citations (`cited`, `citations_of`).
CITED = "cited"


class _JsonObjects(FunctionElement[Any]):
    """A JSON array of one object per row, of `key, value` pairs: an aggregate both
    engines have under different names. NULL (PostgreSQL) or `[]` (SQLite) for no row."""

    type = JSON()
    inherit_cache = True


@compiles(_JsonObjects, "postgresql")
def _json_objects_postgresql(element: _JsonObjects, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_agg(json_build_object({compiler.process(element.clauses, **kw)}))"


@compiles(_JsonObjects, "sqlite")
def _json_objects_sqlite(element: _JsonObjects, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array(json_object({compiler.process(element.clauses, **kw)}))"


_FIELDS = ("id", "index", "document_id", "chunk_id", "document_title", "page_start", "page_end")


def cited(message_id: Any) -> Label[Any]:
    """The citations of the message whose id is `message_id`, as a column of its row
    (`CITED`): a page of messages is read with its citations in one statement."""
    pairs: list[Any] = []
    for field in (*_FIELDS, "quote"):
        pairs += [field, col(getattr(Citation, field))]
    return (
        select(_JsonObjects(*pairs))
        .where(col(Citation.message_id) == message_id)
        .scalar_subquery()
        .label(CITED)
    )


def citations_of(row: RowMapping) -> list[dict[str, Any]]:
    """The citations of a message read with `cited`, in order of first use (the order
    they were stored in)."""
    found: list[dict[str, Any]] | None = row[CITED]
    return sorted(found, key=lambda citation: citation["id"]) if found else []
