"""The model catalog's rules: who may list retired models, what makes a duplicate, when a
model may go, and importing a price list (`agentry models import`)."""

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.core.codes import AuditAction, ErrorCode
from app.core.db import utcnow, violation_of
from app.core.errors import ConflictError, NotFoundError, PermissionDeniedError, UnprocessableError
from app.crud import ai_model as ai_model_crud
from app.crud.page import Page
from app.models.ai_model import (
    PROVIDER_NAME_UNIQUE,
    AIModel,
    AIModelCreate,
    AIModelListQuery,
    AIModelPublic,
    AIModelUpdate,
    CatalogFile,
    ModelKind,
    check_output_fits,
)
from app.models.user import User
from app.services.audit_service import AuditService
from app.services.context import RequestContext
from app.services.transactions import commit_or_conflict

TARGET_TYPE = "ai_model"
_KIND_NAMES = {ModelKind.CHAT: "a chat model", ModelKind.EMBEDDING: "an embedding model"}
_WRONG_KIND = {
    ModelKind.CHAT: ErrorCode.MODEL_NOT_CHAT,
    ModelKind.EMBEDDING: ErrorCode.MODEL_NOT_EMBEDDING,
}
# The audit context of changes made from the command line rather than a request.
COMMAND_LINE = RequestContext(ip=None, user_agent=None, request_id=None)


class AIModelService:
    """`providers` are the provider slugs this server has settings for: they decide each
    model's is_configured."""

    @staticmethod
    def list_models(
        *, session: Session, user: User, query: AIModelListQuery, providers: Collection[str]
    ) -> Page[AIModelPublic]:
        if query.include_disabled and not user.is_superuser:
            raise PermissionDeniedError(
                "Only superusers see disabled models", code="superuser_required"
            )
        page = ai_model_crud.list_models(session=session, user=user, query=query)
        return Page(data=[_public(model, providers) for model in page.data], count=page.count)

    @staticmethod
    def require_usable(
        *, session: Session, model_id: uuid.UUID, kind: ModelKind, field: str, user_of: str
    ) -> AIModel:
        """The enabled model of `kind` that input field `field` names for `user_of` (an
        agent, a knowledge base), else 422: model_unavailable, or model_not_chat /
        model_not_embedding for a model of the other kind."""
        model = ai_model_crud.get_model_by_id(session=session, model_id=model_id)
        if model is None or not model.is_enabled:
            raise UnprocessableError(
                f"{field} does not name an enabled model of the catalog",
                loc=("body", field),
                code=ErrorCode.MODEL_UNAVAILABLE,
            )
        if model.kind != kind:
            raise UnprocessableError(
                f"{field} names {_KIND_NAMES[model.kind]}; {user_of} needs {_KIND_NAMES[kind]}",
                loc=("body", field),
                code=_WRONG_KIND[kind],
            )
        return model

    @staticmethod
    def get(
        *, session: Session, user: User, model_id: uuid.UUID, providers: Collection[str]
    ) -> AIModelPublic:
        return _public(_get_row(session=session, user=user, model_id=model_id), providers)

    @staticmethod
    def create(
        *,
        session: Session,
        actor: User,
        model_in: AIModelCreate,
        context: RequestContext,
        providers: Collection[str],
    ) -> AIModelPublic:
        _ensure_unique(session=session, provider=model_in.provider, name=model_in.name)
        model = AIModel.model_validate(model_in)
        session.add(model)
        _record(
            session=session,
            context=context,
            actor=actor,
            action="model.created",
            model=model,
            details={"is_enabled": model.is_enabled},
        )
        _commit_unique(session)
        return _public(model, providers)

    @staticmethod
    def update(
        *,
        session: Session,
        actor: User,
        model_id: uuid.UUID,
        model_in: AIModelUpdate,
        context: RequestContext,
        providers: Collection[str],
    ) -> AIModelPublic:
        model = _get_row(session=session, user=actor, model_id=model_id)
        changes = model_in.model_dump(exclude_unset=True)
        provider = changes.get("provider", model.provider)
        name = changes.get("name", model.name)
        if (provider, name) != (model.provider, model.name):
            _ensure_unique(session=session, provider=provider, name=name)
        _ensure_output_fits(
            context_window=changes.get("context_window", model.context_window),
            max_output_tokens=changes.get("max_output_tokens", model.max_output_tokens),
        )
        model.sqlmodel_update(changes)
        model.updated_at = utcnow()
        session.add(model)
        _record(
            session=session,
            context=context,
            actor=actor,
            action="model.updated",
            model=model,
            details={"fields": sorted(changes)},
        )
        _commit_unique(session)
        return _public(model, providers)

    @staticmethod
    def delete(
        *, session: Session, actor: User, model_id: uuid.UUID, context: RequestContext
    ) -> None:
        model = _get_row(session=session, user=actor, model_id=model_id)
        if ai_model_crud.is_in_use(session=session, model=model):
            raise _in_use()
        _record(
            session=session,
            context=context,
            actor=actor,
            action="model.deleted",
            model=model,
            details={},
        )
        session.delete(model)
        try:
            session.commit()
        except IntegrityError as error:
            session.rollback()
            if violation_of(error).kind != "foreign_key":
                raise
            raise _in_use() from error  # an agent took it up since we looked

    # ==================== the command line ====================

    @staticmethod
    def parse_catalog(raw: bytes) -> CatalogFile:
        """A catalog file's contents. Numbers are read as decimals, never floats, so a
        price written as 2.50 stays exactly 2.50."""
        try:
            document = json.loads(raw, parse_float=Decimal)
        except ValueError as error:
            raise UnprocessableError(
                f"not valid JSON: {error}", loc=(), code="invalid_catalog", type="json_invalid"
            ) from error
        try:
            return CatalogFile.model_validate(document)
        except ValidationError as error:
            raise UnprocessableError(_describe(error), loc=(), code="invalid_catalog") from error

    @staticmethod
    def import_catalog(
        *, session: Session, entries: Sequence[Mapping[str, Any]]
    ) -> tuple[int, int]:
        """Adds new models and updates existing ones, matched by (provider, name); returns
        (created, updated). All or nothing: one invalid entry and nothing is written.
        Fields an entry leaves out (such as is_enabled) keep their current values."""
        models_in = _validate_entries(entries)
        created = updated = 0
        now = utcnow()
        for model_in in models_in:
            existing = ai_model_crud.get_model(
                session=session, provider=model_in.provider, name=model_in.name
            )
            if existing is None:
                session.add(AIModel.model_validate(model_in))
                created += 1
                continue
            changes = {
                field: value
                for field, value in model_in.model_dump(exclude_unset=True).items()
                if getattr(existing, field) != value
            }
            if changes.keys() & {"kind", "dimensions"}:
                # Agents and stored vectors depend on them: a new model is a new entry.
                raise UnprocessableError(
                    f"{model_in.provider}/{model_in.name}: a model's kind and dimensions "
                    "cannot change; add it under another name",
                    loc=("models", model_in.name),
                )
            if changes:
                existing.sqlmodel_update(changes)
                existing.updated_at = now
                session.add(existing)
                updated += 1
        AuditService.record(
            session=session,
            context=COMMAND_LINE,
            actor=None,
            action="models.imported",
            details={"created": created, "updated": updated},
        )
        _commit_unique(session)
        return created, updated


def _public(model: AIModel, providers: Collection[str]) -> AIModelPublic:
    return AIModelPublic.model_validate(
        model, update={"is_configured": model.provider in providers}
    )


def _get_row(*, session: Session, user: User, model_id: uuid.UUID) -> AIModel:
    model = ai_model_crud.get_visible_model(session=session, user=user, model_id=model_id)
    if model is None:
        raise NotFoundError("Model not found")  # the same for missing and retired
    return model


def _ensure_unique(*, session: Session, provider: str, name: str) -> None:
    if ai_model_crud.get_model(session=session, provider=provider, name=name) is not None:
        raise _duplicate()


def _ensure_output_fits(*, context_window: int, max_output_tokens: int) -> None:
    try:
        check_output_fits(context_window=context_window, max_output_tokens=max_output_tokens)
    except ValueError as error:
        # The same shape as a schema's 422, so clients handle both alike.
        raise UnprocessableError(str(error), loc=("body", "max_output_tokens")) from error


def _validate_entries(entries: Sequence[Mapping[str, Any]]) -> list[AIModelCreate]:
    models_in: list[AIModelCreate] = []
    first_seen: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries):
        try:
            model_in = AIModelCreate.model_validate(entry)
        except ValidationError as error:
            raise UnprocessableError(
                _describe(error, where=f"models[{index}]"),
                loc=("models", index),
                code="invalid_catalog",
            ) from error
        key = (model_in.provider, model_in.name)
        if key in first_seen:
            raise UnprocessableError(
                f"models[{index}]: {key[0]}/{key[1]} is already models[{first_seen[key]}]",
                loc=("models", index),
                code="invalid_catalog",
            )
        first_seen[key] = index
        models_in.append(model_in)
    return models_in


def _describe(error: ValidationError, *, where: str = "") -> str:
    """'models[3].input_price_per_million: Decimal input should have ...', one per problem."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in (where, *item["loc"]) if part != "")
        problems.append(f"{path}: {item['msg']}" if path else item["msg"])
    return "; ".join(problems)


def _record(
    *,
    session: Session,
    context: RequestContext,
    actor: User,
    action: AuditAction | str,
    model: AIModel,
    details: dict[str, Any],
) -> None:
    AuditService.record(
        session=session,
        context=context,
        actor=actor,
        action=action,
        target_type=TARGET_TYPE,
        target_id=str(model.id),
        details={"provider": model.provider, "name": model.name, **details},
    )


def _duplicate() -> ConflictError:
    return ConflictError("This provider already has a model with this name", code="model_exists")


def _in_use() -> ConflictError:
    return ConflictError(
        "Agents use this model; disable it instead, or move them to another first",
        code="model_in_use",
    )


def _commit_unique(session: Session) -> None:
    commit_or_conflict(session, {PROVIDER_NAME_UNIQUE: _duplicate()})
