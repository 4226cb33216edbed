"""Data every running Agentry needs, prepared at start-up; each step is idempotent."""

import logging

from sqlmodel import Session

from app.core.config import Settings
from app.services.user_service import UserService

logger = logging.getLogger("agentry.bootstrap")


class BootstrapService:
    @staticmethod
    def run(*, session: Session, config: Settings) -> list[str]:
        """Runs every start-up step; returns what the operator must be told once."""
        notices = []
        created = UserService.ensure_first_superuser(session=session, config=config)
        if created is not None:
            user, generated_password = created
            logger.info("first superuser ready: %s", user.email)
            if generated_password is not None:
                notices.append(
                    f"Created the first superuser {user.email} with the generated password "
                    f"{generated_password}\nIt is shown only this once: log in and change it."
                )
        return notices
