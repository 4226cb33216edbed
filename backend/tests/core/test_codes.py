"""The closed sets of codes (app.core.codes), read off the source and the README.

Every code the source writes as a literal, where it raises an error, fails a run, a
document or an index, or records an audit entry, must be a member of the set clients are
told about; the README must list every error code with the statuses the source gives it.
"""

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import pytest

from app.api import errors as api_errors
from app.core import errors
from app.core.codes import (
    AuditAction,
    DocumentErrorCode,
    ErrorCode,
    IndexErrorCode,
    LLMErrorCode,
    RunErrorCode,
)
from app.core.errors import AppError, ConflictError

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "backend" / "app"
ENUMS: tuple[type[StrEnum], ...] = (
    ErrorCode,
    RunErrorCode,
    DocumentErrorCode,
    IndexErrorCode,
    LLMErrorCode,
    AuditAction,
)


def _error_classes() -> dict[str, type[AppError]]:
    found: dict[str, type[AppError]] = {}
    pending: list[type[AppError]] = [AppError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


ERROR_CLASSES = _error_classes()

# Where a code is the first positional argument.
POSITIONAL: dict[str, type[StrEnum]] = {
    "RunFailedError": RunErrorCode,
    "IngestionFailedError": DocumentErrorCode,
    "ExtractionError": DocumentErrorCode,
    "LLMError": LLMErrorCode,
}
# Where a code is `code=`, by the call as written (crud modules share function names).
KEYWORD: dict[str, type[StrEnum]] = {
    **dict.fromkeys(ERROR_CLASSES, ErrorCode),
    "BodyLimit": ErrorCode,
    "_json": ErrorCode,
    "error_body": ErrorCode,
    "run_crud.fail_expired": RunErrorCode,
    "run_crud.fail_queued": RunErrorCode,
    "ingestion_crud.fail_expired": DocumentErrorCode,
    "index_crud.fail": IndexErrorCode,
    "index_crud.fail_expired": IndexErrorCode,
    "index_crud.mark_documents": DocumentErrorCode,
}
# Columns written with a code, as keywords or as keys of a `values` dict.
COLUMNS: dict[str, tuple[type[StrEnum], ...]] = {
    "error_code": (RunErrorCode, DocumentErrorCode),
    "embedding_error_code": (DocumentErrorCode,),
    "index_error_code": (IndexErrorCode,),
}
ENUM_NAMES = {enum.__name__: enum for enum in ENUMS}


def _callee(call: ast.Call) -> str:
    return ast.unparse(call.func)


def _codes_in(node: ast.AST) -> Iterator[str]:
    """String literals, and members written as `SomeCode.NAME`, in an expression."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value
        elif (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.value, ast.Name)
            and sub.value.id in ENUM_NAMES
        ):
            yield ENUM_NAMES[sub.value.id][sub.attr].value


def _source() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted(APP.rglob("*.py")):
        if "alembic" in path.parts:
            continue
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            yield where, node


def produced() -> list[tuple[str, str, type[StrEnum] | tuple[type[StrEnum], ...]]]:
    """(where, code, where it must belong) for every code the source writes out."""
    found: list[tuple[str, str, type[StrEnum] | tuple[type[StrEnum], ...]]] = []
    for where, node in _source():
        if isinstance(node, ast.Call):
            callee = _callee(node)
            name = callee.rsplit(".", 1)[-1]
            if name in POSITIONAL and node.args:
                found += [(where, c, POSITIONAL[name]) for c in _codes_in(node.args[0])]
            for keyword in node.keywords:
                if keyword.arg == "code":
                    enum = KEYWORD.get(callee) or KEYWORD.get(name)
                    codes = list(_codes_in(keyword.value))
                    assert enum is not None or not codes, f"{where}: map {callee}() in KEYWORD"
                    found += [(where, c, enum) for c in codes if enum is not None]
                elif keyword.arg == "action" and name != "add_argument":  # argparse's own
                    found += [(where, c, AuditAction) for c in _codes_in(keyword.value)]
                elif keyword.arg in COLUMNS:
                    found += [(where, c, COLUMNS[keyword.arg]) for c in _codes_in(keyword.value)]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in COLUMNS:
                    found += [(where, c, COLUMNS[key.value]) for c in _codes_in(value)]
    return found


class TestSourceProducesOnlyMembers:
    def test_every_literal_code_belongs_to_its_set(self) -> None:
        found = produced()
        # The scan sees what it should: a broken scan must not pass by finding nothing.
        assert len(found) > 100
        assert {enum for _, _, enum in found} >= {
            ErrorCode,
            RunErrorCode,
            DocumentErrorCode,
            IndexErrorCode,
            LLMErrorCode,
            AuditAction,
        }
        wrong = []
        for where, code, enums in found:
            allowed = enums if isinstance(enums, tuple) else (enums,)
            if not any(code in {member.value for member in enum} for enum in allowed):
                wrong.append(f"{where}: {code!r} is not in {[e.__name__ for e in allowed]}")
        assert wrong == [], "\n".join(wrong)

    def test_every_error_class_defaults_to_a_member(self) -> None:
        for cls in ERROR_CLASSES.values():
            assert isinstance(cls.code, ErrorCode), cls.__name__

    def test_an_unknown_code_fails_where_it_is_raised(self) -> None:
        with pytest.raises(ValueError, match="not_a_code"):
            ConflictError("Conflict", code="not_a_code")
        assert ConflictError("Conflict", code="duplicate").error_code is ErrorCode.DUPLICATE


class TestSetsAgree:
    @pytest.mark.parametrize("enum", [ErrorCode, RunErrorCode, IndexErrorCode])
    def test_provider_failures_pass_through(self, enum: type[StrEnum]) -> None:
        # Runs, index builds and semantic search hand on an LLMError's code unchanged.
        assert {c.value for c in LLMErrorCode} <= {c.value for c in enum}

    @pytest.mark.parametrize("enum", ENUMS)
    def test_names_spell_their_values(self, enum: type[StrEnum]) -> None:
        for member in enum:
            assert member.name == member.value.upper().replace(".", "_"), member
            assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?", member.value), member


# ==================== the README ====================


def readme_section(heading: str) -> str:
    return (ROOT / "README.md").read_text().split(heading, 1)[1].split("\n#", 1)[0]


def table_rows(section: str) -> Iterator[list[str]]:
    """The cells of each row of the first table in `section`, below its header."""
    lines = iter(section.splitlines())
    for line in lines:
        if line.startswith("|---"):
            break
    for line in lines:
        if not line.startswith("|"):
            return
        yield [cell.strip() for cell in line.strip().strip("|").split("|")]


def readme_error_table() -> dict[str, set[int]]:
    """`code` -> the statuses its row of the README's "Error codes" table gives."""
    rows: dict[str, set[int]] = {}
    for cells in table_rows(readme_section("### Error codes")):
        statuses = {int(status) for status in re.findall(r"\b[1-5][0-9]{2}\b", cells[1])}
        for code in re.findall(r"`([a-z_.]+)`", cells[0]):
            assert code not in rows, f"{code} has two rows"
            rows[code] = statuses
    return rows


def statuses_in_source() -> dict[str, set[int]]:
    """The statuses the source gives each error code it names where it raises it."""
    found: dict[str, set[int]] = defaultdict(set)
    for cls in ERROR_CLASSES.values():
        found[cls.code].add(cls.status_code)
    for status, framework_code in api_errors._HTTP_CODES.items():
        found[framework_code].add(status)
    for _, node in _source():
        if isinstance(node, ast.Call) and _callee(node) in ERROR_CLASSES:
            status = ERROR_CLASSES[_callee(node)].status_code
            for keyword in node.keywords:
                if keyword.arg == "code":
                    for code in _codes_in(keyword.value):
                        found[code].add(status)
    return found


def test_readme_lists_every_error_code_with_its_status() -> None:
    table = readme_error_table()
    codes = {code.value for code in ErrorCode}
    assert codes - set(table) == set(), "add these to the README's error codes table"
    assert set(table) - codes == set(), "the README lists codes that ErrorCode does not"
    assert [code for code, statuses in table.items() if not statuses] == []
    for code, statuses in statuses_in_source().items():
        assert statuses <= table[code], f"{code}: the source gives {statuses}"
    # Semantic search answers a question it could not embed with the provider's code.
    for code in LLMErrorCode:
        assert errors.ServiceUnavailableError.status_code in table[code], code


def test_readme_run_table_lists_every_run_error_code() -> None:
    rows = table_rows(readme_section("### The life of a run"))
    listed = {code for cells in rows for code in re.findall(r"`([a-z_]+)`", cells[0])}
    assert {code.value for code in RunErrorCode} == listed
