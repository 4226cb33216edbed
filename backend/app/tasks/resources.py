"""What a process needs to execute runs: database sessions and an LLM client."""

from sqlmodel import Session

from app.core.config import Settings
from app.core.db import engine
from app.modules.llm.client import LLMClient


def default_session() -> Session:
    return Session(engine, expire_on_commit=False)


def build_llm_client(config: Settings) -> LLMClient:
    return LLMClient(
        providers=config.LLM_PROVIDERS,
        connect_timeout=config.LLM_CONNECT_TIMEOUT,
        read_timeout=config.LLM_READ_TIMEOUT,
        max_retries=config.LLM_MAX_RETRIES,
    )
