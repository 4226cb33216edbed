import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlmodel import Session, create_engine, select

from app.core.security import verify_password
from app.models.user import User
from app.services.bootstrap_service import BootstrapService
from app.services.user_service import UserService
from tests.conftest import AgentryCommand
from tests.environment import settings
from tests.factories import create_user


def _no_superusers(db: Session) -> None:
    for existing in db.exec(select(User).where(User.is_superuser)).all():
        existing.is_superuser = False
        db.add(existing)
    db.commit()


def test_first_superuser_is_created_once_with_a_generated_password(db: Session) -> None:
    _no_superusers(db)
    notices = BootstrapService.run(session=db, config=settings)
    [notice] = notices
    created = db.exec(select(User).where(User.email == "admin@example.com")).one()
    assert created.is_superuser
    password = notice.split("generated password ")[1].split()[0]
    assert verify_password(password, created.hashed_password, config=settings)[0]
    assert BootstrapService.run(session=db, config=settings) == []  # idempotent: nothing new to say


def test_configured_password_is_used_and_never_printed(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_superusers(db)
    monkeypatch.setattr(settings, "FIRST_SUPERUSER_EMAIL", "Root@Example.com")
    monkeypatch.setattr(settings, "FIRST_SUPERUSER_PASSWORD", SecretStr("configured passphrase"))
    assert BootstrapService.run(session=db, config=settings) == []
    root = db.exec(select(User).where(User.email == "root@example.com")).one()
    assert verify_password("configured passphrase", root.hashed_password, config=settings)[0]


def test_nothing_happens_while_a_superuser_exists(db: Session) -> None:
    create_user(db, is_superuser=True)
    count = len(db.exec(select(User)).all())
    assert UserService.ensure_first_superuser(session=db, config=settings) is None
    assert len(db.exec(select(User)).all()) == count


def test_create_superuser_command_migrates_and_creates(
    tmp_path: Path, agentry: AgentryCommand
) -> None:
    """The installed `agentry` command, in a process of its own (the suite's one smoke
    test of the entry point), then again in this process: nothing new the second time."""
    env = {
        "ENVIRONMENT": "development",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "FIRST_SUPERUSER_EMAIL": "ops@example.com",
    }
    installed = Path(sys.executable).with_name("agentry")
    result = subprocess.run(
        [str(installed), "create-superuser"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Created the first superuser ops@example.com" in result.stdout
    again = agentry("create-superuser", env=env)
    assert again.returncode == 0, again.stderr
    assert "Created" not in again.stdout
    engine = create_engine(f"sqlite:///{tmp_path}/cli.db")
    try:
        with Session(engine) as session:
            [admin] = session.exec(select(User).where(User.is_superuser)).all()
    finally:
        engine.dispose()
    assert admin.email == "ops@example.com"
