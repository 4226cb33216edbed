"""Seed a benchmark's data straight into the database and mint access tokens for it.

Run by `benchmarks.run` in a subprocess with exactly the server's environment, so the
app's own settings (database URL, SECRET_KEY, JWT issuer and audience) are the server's
and the tokens minted here are ones the server accepts. Prints nothing; writes a JSON
fixture for the load generator.
"""

import argparse
import json
import secrets
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import Session, SQLModel

from app.core.config import Settings, load_settings
from app.core.db import create_db_engine, utcnow
from app.core.security import create_access_token, hash_password
from app.models.agent import Agent
from app.models.auth import LoginSession
from app.models.thread import Message, MessageRole, Thread
from app.models.user import User
from benchmarks import PAGING_THREAD_MESSAGES

BATCH_SIZE = 1_000
CHAT_USERS = 5
OTHER_THREAD_MESSAGES = 25
PASSWORD = "bench-password-not-for-login"  # noqa: S105 (hashed once, never used to log in)
CONTENT = (
    "Could you summarise the quarterly report and list the three risks it names, "
    "with one sentence on how each could be mitigated before the next review?"
)


@dataclass
class SeededUser:
    token: str
    agent_ids: list[str]


@dataclass
class SeededThread:
    token: str
    thread_id: str
    messages: int


@dataclass
class Fixture:
    users: list[SeededUser] = field(default_factory=list)
    threads: list[SeededThread] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed benchmark data (used by benchmarks.run).")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--agents-per-user", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument(
        "--chat-users", type=int, default=CHAT_USERS, help="the first N users own the threads"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.messages < PAGING_THREAD_MESSAGES:
        parser.error(f"--messages must be at least {PAGING_THREAD_MESSAGES}")
    started = time.perf_counter()
    config = load_settings()
    with Session(create_db_engine(config), expire_on_commit=False) as session:
        fixture = seed(
            session,
            config=config,
            users=args.users,
            agents_per_user=args.agents_per_user,
            messages=args.messages,
            chat_users=args.chat_users,
        )
    fixture.seconds = round(time.perf_counter() - started, 2)
    args.out.write_text(json.dumps(asdict(fixture)))
    return 0


def seed(
    session: Session,
    *,
    config: Settings,
    users: int,
    agents_per_user: int,
    messages: int,
    chat_users: int = CHAT_USERS,
) -> Fixture:
    """Users with a login session each, their agents, and threads of a few of them."""
    now = utcnow()
    # Unique per run, so seeding a database twice (a --database-url reused) cannot clash.
    tag = secrets.token_hex(4)
    hashed = hash_password(PASSWORD, config=config)  # once: hashing is slow on purpose
    people = [
        User(email=f"bench-{tag}-{index}@example.com", hashed_password=hashed)
        for index in range(users)
    ]
    _insert(session, people)
    logins = [LoginSession(user_id=user.id, expires_at=now + timedelta(days=1)) for user in people]
    _insert(session, logins)
    agents = {
        user.id: [
            Agent(
                owner_id=user.id,
                name=f"Agent {number}",
                description="A seeded agent for the benchmark.",
                instructions="You are a helpful assistant. Answer briefly.",
                created_at=now - timedelta(seconds=number),
                updated_at=now - timedelta(seconds=number),
            )
            for number in range(agents_per_user)
        ]
        for user in people
    }
    _insert(session, [agent for owned in agents.values() for agent in owned])
    threads, thread_messages = _conversations(people[:chat_users], agents, messages, start=now)
    _insert(session, threads)
    _insert(session, thread_messages)

    fixture = Fixture()
    tokens: dict[uuid.UUID, str] = {}
    for user, login in zip(people, logins, strict=True):
        token, _ = create_access_token(user_id=user.id, session_id=login.id, config=config)
        tokens[user.id] = token
        fixture.users.append(SeededUser(token, [str(agent.id) for agent in agents[user.id]]))
    per_thread: dict[uuid.UUID, int] = {}
    for message in thread_messages:
        per_thread[message.thread_id] = per_thread.get(message.thread_id, 0) + 1
    # Every thread with its length: a runner picks those long enough for its pages.
    fixture.threads = [
        SeededThread(tokens[thread.owner_id], str(thread.id), per_thread[thread.id])
        for thread in threads
    ]
    fixture.counts = {
        "users": len(people),
        "agents": sum(len(owned) for owned in agents.values()),
        "threads": len(threads),
        "messages": len(thread_messages),
    }
    return fixture


def _conversations(
    chat_users: list[User],
    agents: dict[uuid.UUID, list[Agent]],
    total: int,
    *,
    start: datetime,
) -> tuple[list[Thread], list[Message]]:
    """`total` messages over the threads of `chat_users`: some long threads to page
    through, the rest in short ones. Each message is a second after the one before it."""
    long_threads = max(1, min(len(chat_users), total // (2 * PAGING_THREAD_MESSAGES)))
    sizes = [PAGING_THREAD_MESSAGES] * long_threads
    remaining = total - sum(sizes)
    while remaining > 0:
        sizes.append(min(OTHER_THREAD_MESSAGES, remaining))
        remaining -= sizes[-1]
    threads: list[Thread] = []
    messages: list[Message] = []
    at = start - timedelta(seconds=total)
    for index, size in enumerate(sizes):
        owner = chat_users[index % len(chat_users)]
        agent = agents[owner.id][index % len(agents[owner.id])]
        thread = Thread(
            owner_id=owner.id, agent_id=agent.id, title=f"Conversation {index}", created_at=at
        )
        for number in range(size):
            role = MessageRole.USER if number % 2 == 0 else MessageRole.ASSISTANT
            messages.append(Message(thread_id=thread.id, role=role, content=CONTENT, created_at=at))
            at += timedelta(seconds=1)
        thread.updated_at = thread.last_message_at = at
        threads.append(thread)
    return threads, messages


def _insert(session: Session, rows: Sequence[SQLModel]) -> None:
    # Ids come from default factories, so no row needs a round trip to learn its key and
    # SQLAlchemy sends each batch as a few multi-row INSERTs.
    for start in range(0, len(rows), BATCH_SIZE):
        session.add_all(rows[start : start + BATCH_SIZE])
        session.commit()


if __name__ == "__main__":
    sys.exit(main())
