"""Usage reports from the ledger: per day, model, agent or user, over UTC dates."""

import csv
import io
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlmodel import Session

from app.core.db import utcnow
from app.core.errors import UnprocessableError
from app.crud import usage as usage_crud
from app.models.usage import AdminGroup, UsageReport, UsageRow, UsageTotals

MAX_REPORT_DAYS = 366
CSV_COLUMNS = ("key", "input_tokens", "output_tokens", "cost_usd", "runs")


class UsageService:
    @staticmethod
    def report(
        *,
        session: Session,
        user_id: uuid.UUID | None,
        start: date | None,
        end: date | None,
        group_by: AdminGroup,
    ) -> UsageReport:
        today = utcnow().date()
        first = start or today.replace(day=1)
        last = end or today
        if last < first:
            raise UnprocessableError(
                "`to` is before `from`", loc=("query", "to"), code="invalid_range"
            )
        if (last - first).days >= MAX_REPORT_DAYS:
            raise UnprocessableError(
                f"A report covers at most {MAX_REPORT_DAYS} days",
                loc=("query", "to" if end else "from"),
                code="invalid_range",
            )
        rows = usage_crud.grouped(
            session=session,
            group_by=group_by,
            start=datetime.combine(first, time(), tzinfo=UTC),
            end=datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC),
            user_id=user_id,
        )
        data = [
            UsageRow(
                key=row.key,
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
                cost_usd=row.cost_usd,
                runs=row.runs,
            )
            for row in rows
        ]
        totals = UsageTotals(
            input_tokens=sum(row.input_tokens for row in data),
            output_tokens=sum(row.output_tokens for row in data),
            cost_usd=sum((row.cost_usd for row in data), Decimal(0)),
            # A run is in one group per grouping except by day (a run never spans days
            # either: its one billed call is written at one moment).
            runs=sum(row.runs for row in data),
        )
        return UsageReport(start=first, end=last, group_by=group_by, data=data, totals=totals)

    @staticmethod
    def to_csv(report: UsageReport) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for row in report.data:
            writer.writerow([row.key, row.input_tokens, row.output_tokens, row.cost_usd, row.runs])
        totals = report.totals
        writer.writerow(
            ["total", totals.input_tokens, totals.output_tokens, totals.cost_usd, totals.runs]
        )
        return buffer.getvalue()
