from sqlalchemy import text
from sqlmodel import Session


class HealthService:
    @staticmethod
    def check_database(*, session: Session) -> None:
        """Raises the driver's error when the database cannot answer a trivial query."""
        session.execute(text("SELECT 1"))
