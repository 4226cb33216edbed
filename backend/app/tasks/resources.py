"""What a process needs to execute runs: database sessions and an LLM client, both made
from the settings and engine its composition root built."""

from functools import partial

from sqlalchemy import Engine

from app.core.config import Settings
from app.core.db import open_session
from app.modules.llm.client import LLMClient
from app.services.run_runtime import SessionFactory


def session_factory_for(engine: Engine) -> SessionFactory:
    return partial(open_session, engine)


def build_llm_client(config: Settings) -> LLMClient:
    return LLMClient(
        providers=config.LLM_PROVIDERS,
        connect_timeout=config.LLM_CONNECT_TIMEOUT,
        read_timeout=config.LLM_READ_TIMEOUT,
        max_retries=config.LLM_MAX_RETRIES,
    )
