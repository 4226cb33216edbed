"""Every table, imported here so that `SQLModel.metadata` knows them all."""

from sqlmodel import SQLModel

# Deterministic constraint names, so migrations can find what they alter on every engine.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

from app.models.agent import Agent, AgentKnowledgeBase  # noqa: E402
from app.models.ai_model import AIModel  # noqa: E402
from app.models.audit import AuditEntry  # noqa: E402
from app.models.auth import LoginSession, PasswordResetToken, RefreshToken  # noqa: E402
from app.models.citation import Citation  # noqa: E402
from app.models.document import Chunk, Document  # noqa: E402
from app.models.knowledge_base import KnowledgeBase  # noqa: E402
from app.models.run import Run  # noqa: E402
from app.models.thread import Message, Thread  # noqa: E402
from app.models.usage import UsageEntry  # noqa: E402
from app.models.user import User  # noqa: E402

__all__ = [
    "AIModel",
    "Agent",
    "AgentKnowledgeBase",
    "AuditEntry",
    "Chunk",
    "Citation",
    "Document",
    "KnowledgeBase",
    "LoginSession",
    "Message",
    "PasswordResetToken",
    "RefreshToken",
    "Run",
    "Thread",
    "UsageEntry",
    "User",
]
