"""Monthly budgets: what a user has spent, holds in reservations, and has left.

Months are calendar months in UTC. A run reserves its worst case before it is queued and
settles at the provider's reported cost, so concurrent runs cannot spend past the budget.
"""

from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import Session

from app.core.db import utcnow
from app.core.errors import PaymentRequiredError
from app.crud import run as run_crud
from app.models.usage import QuotaPublic
from app.models.user import User


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    resets_at = (
        datetime(now.year + 1, 1, 1, tzinfo=UTC)
        if now.month == 12
        else datetime(now.year, now.month + 1, 1, tzinfo=UTC)
    )
    return start, resets_at


class QuotaService:
    @staticmethod
    def status(*, session: Session, user: User) -> QuotaPublic:
        start, resets_at = month_bounds(utcnow())
        use = run_crud.budget_use(session=session, user=user, since=start)
        budget = user.monthly_budget_usd
        return QuotaPublic(
            monthly_budget_usd=budget,
            spent=use.spent,
            reserved=use.reserved,
            remaining=None if budget is None else budget - use.spent - use.reserved,
            resets_at=resets_at,
        )

    @staticmethod
    def ensure_room(*, session: Session, user: User, amount: Decimal) -> None:
        """Refuses (402) a reservation of `amount` that does not fit what is left.

        The caller holds the owner's lock (crud.run.lock_owner) until it commits the run
        that carries the reservation, so no other start can slip in between.
        """
        quota = QuotaService.status(session=session, user=user)
        if quota.remaining is None or amount <= quota.remaining:
            return
        raise PaymentRequiredError(
            "This run could cost more than what is left of your monthly budget",
            code="quota_exceeded",
            extra={"remaining": str(quota.remaining), "resets_at": quota.resets_at.isoformat()},
        )
