"""Passages' embeddings: one vector per passage and embedding model, and the state of a
knowledge base's semantic index.

A knowledge base names the embedding model it wants (`embedding_model_id`) and is served
by the model whose vectors are complete (`index_model_id`). When the two differ the new
vectors are built in the background while the old ones keep serving; the switch is one
transaction, and a search only ever compares vectors of the serving model.
"""

import uuid
from enum import StrEnum

from sqlalchemy import Index, LargeBinary
from sqlmodel import Field, SQLModel

from app.core.db import BigIntId


class ChunkVector(SQLModel, table=True):
    """A passage's embedding by one model: float32, little-endian, of unit length.

    On PostgreSQL with the pgvector extension a column `embedding vector` holds the same
    vector for the model's HNSW index (made by migrations and crud.chunk_vector, not a
    field here)."""

    __tablename__ = "chunk_vector"
    __table_args__ = (
        Index("ix_chunk_vector_knowledge_base_id_model_id", "knowledge_base_id", "model_id"),
    )

    chunk_id: int = Field(
        primary_key=True, sa_type=BigIntId, foreign_key="chunk.id", ondelete="CASCADE"
    )
    model_id: uuid.UUID = Field(primary_key=True, foreign_key="ai_model.id", ondelete="CASCADE")
    knowledge_base_id: uuid.UUID
    owner_id: uuid.UUID
    vector: bytes = Field(sa_type=LargeBinary)


class IndexStatus(StrEnum):
    NONE = "none"  # no embedding model: keyword search only
    BUILDING = "building"  # vectors of embedding_model_id are being made
    READY = "ready"  # every passage that could be embedded has its vector
    FAILED = "failed"  # the last build stopped (index_error_code); the old index serves


class SearchMode(StrEnum):
    KEYWORD = "keyword"
    SEMANTIC = "semantic"
    HYBRID = "hybrid"
