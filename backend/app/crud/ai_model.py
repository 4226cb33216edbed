"""Queries of the model catalog. Nothing here commits."""

import uuid
from typing import TypeVar

from sqlalchemy import or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.crud import text as text_crud
from app.crud.page import Page
from app.models.agent import Agent
from app.models.ai_model import AIModel, AIModelListQuery
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User

T = TypeVar("T")


def _visible_to(statement: SelectOfScalar[T], user: User) -> SelectOfScalar[T]:
    """Which models a user may see: a disabled model is retired, and to everyone but
    superusers it does not exist."""
    if user.is_superuser:
        return statement
    return statement.where(col(AIModel.is_enabled))


def get_model(*, session: Session, provider: str, name: str) -> AIModel | None:
    """The model a provider serves under `name`, enabled or not (names are unique)."""
    statement = select(AIModel).where(AIModel.provider == provider, AIModel.name == name)
    return session.exec(statement).first()


def get_model_by_id(*, session: Session, model_id: uuid.UUID) -> AIModel | None:
    """Any model, enabled or not: callers that run or bind models check is_enabled."""
    return session.get(AIModel, model_id)


def get_visible_model(*, session: Session, user: User, model_id: uuid.UUID) -> AIModel | None:
    statement = _visible_to(select(AIModel).where(AIModel.id == model_id), user)
    return session.exec(statement).first()


def list_models(*, session: Session, user: User, query: AIModelListQuery) -> Page[AIModel]:
    """By provider, then display name (case-insensitive, as people read a list)."""
    statement = _visible_to(select(AIModel), user)
    if not query.include_disabled:
        statement = statement.where(col(AIModel.is_enabled))
    statement = statement.order_by(
        col(AIModel.provider),
        text_crud.lower(session, col(AIModel.display_name)),
        col(AIModel.name),
    )
    # The whole catalog, unpaged: the count is the rows'.
    rows = session.exec(statement).all()
    return Page(data=rows, count=len(rows))


def is_in_use(*, session: Session, model: AIModel) -> bool:
    """Whether any agent is bound to the model, or any knowledge base wants or is served
    by it (and so it may not be deleted)."""
    statement = select(Agent.id).where(Agent.model_id == model.id).limit(1)
    if session.exec(statement).first() is not None:
        return True
    indexes = (
        select(KnowledgeBase.id)
        .where(
            or_(
                col(KnowledgeBase.embedding_model_id) == model.id,
                col(KnowledgeBase.index_model_id) == model.id,
            )
        )
        .limit(1)
    )
    return session.exec(indexes).first() is not None
