"""Billing on a self-hosted server: what a "cost" is, plans, budgets and compute allowances.

A terracube server charges no money. What a request consumes is CPU time: the CPU-seconds of
a batch job's process, or of the server process while a synchronous request computes. A
"cost" is those CPU-seconds times a rate the administrator sets (TERRACUBE_BILLING_RATE,
units of TERRACUBE_BILLING_CURRENCY per CPU-second; 0 by default, so every cost is 0 and the
one plan is the free one). The currency is a back-end specific unit ("credits" by default),
which the API allows besides ISO 4217 codes.

Two limits apply before and while something runs:
- the request's own `budget` (in the currency): refused with PaymentRequired when the
  estimate's costs exceed it, stopped when the costs of the CPU time used reach it;
- the user's compute allowance (CPU-seconds per rolling week, `terracube users budget`):
  refused with PaymentRequired when it is used up, a job is stopped when it runs past it.

The estimate's billing fields (`costs`, `expires`) come from
`estimate_billing`, which the estimate endpoint calls with the duration it estimated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from terracube import errors
from terracube.db import Base, Database
from terracube.settings import Settings

FREE_PLAN = "free"
METERED_PLAN = "metered"
WEEK = timedelta(days=7)
ESTIMATE_VALID_FOR = timedelta(hours=1)


# --- what GET / says -----------------------------------------------------------------------------
def billing(settings: Settings) -> dict[str, Any]:
    """The `billing` object of GET /: the currency, one plan (free at rate 0, metered else)."""
    rate = settings.billing_rate
    if rate > 0:
        plan = {"name": METERED_PLAN, "paid": True,
                "description": f"Every CPU-second of processing costs {rate:g} "
                               f"{settings.billing_currency}; results download free of charge."}
    else:
        plan = {"name": FREE_PLAN, "paid": False,
                "description": "Processing costs nothing on this server; an administrator may "
                               "limit each user's CPU time per week (see GET /me)."}
    return {"currency": settings.billing_currency, "default_plan": plan["name"], "plans": [plan]}


def default_plan(settings: Settings) -> str:
    return str(billing(settings)["default_plan"])


def checked_plan(plan: Any, settings: Settings) -> str | None:
    """A requested plan, matched without regard to case; None stays None (the default)."""
    if plan is None:
        return None
    names = [p["name"] for p in billing(settings)["plans"]]
    for name in names:
        if isinstance(plan, str) and plan.lower() == name.lower():
            return str(name)
    raise errors.BillingPlanInvalid(
        f"Unknown billing plan {plan!r}; this server offers {', '.join(map(repr, names))} "
        "(GET / lists the plans).")


# --- costs ---------------------------------------------------------------------------------------
def cpu_seconds(usage: dict[str, Any] | None) -> float:
    """The CPU-seconds of a job's or request's `usage` (0 when not measured)."""
    cpu = (usage or {}).get("cpu") or {}
    try:
        return max(0.0, float(cpu.get("value", 0)))
    except (TypeError, ValueError):
        return 0.0


def costs_of(usage: dict[str, Any] | None, settings: Settings) -> float:
    """The costs of what was used: CPU-seconds times the configured rate."""
    return round(cpu_seconds(usage) * settings.billing_rate, 6)


def costs_header(costs: float) -> str:
    """The OpenEO-Costs header value (a plain number)."""
    return f"{costs:g}"


_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                       r"(?:(\d+(?:\.\d+)?)S)?)?$")


def duration_seconds(duration: Any) -> float | None:
    """Seconds of an ISO 8601 duration such as PT3M20S (days included; None if unreadable)."""
    match = _DURATION.match(str(duration or ""))
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def estimate_billing(estimate: dict[str, Any], settings: Settings,
                     now: datetime | None = None) -> dict[str, Any]:
    """`costs` and `expires` for an estimate with a `duration`.

    The estimated duration is taken as the CPU time of one core (how a job process computes
    by default); the estimate holds for an hour (collections and the user's files can
    change). Downloads are not charged, so their number is unlimited: `downloads_included`
    is left out, which the API defines as null, unlimited. A literal null fails the official
    suite's wp4 (`test_GET_jobs_job_id_estimate`: "None is not of type 'integer'", its
    OpenAPI 3.1 validator ignores 3.0's `nullable`): decision record 0012."""
    now = now or datetime.now(UTC)
    seconds = duration_seconds(estimate.get("duration"))
    costs = 0.0 if seconds is None else round(seconds * settings.billing_rate, 6)
    return {"costs": costs,
            "expires": (now + ESTIMATE_VALID_FOR).strftime("%Y-%m-%dT%H:%M:%SZ")}


def checked_budget(budget: Any) -> float | None:
    """A request's `budget`: a number >= 0 in the currency, or null (no limit)."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        raise errors.BudgetInvalid("'budget' must be a number >= 0 (in the currency of GET / "
                                   "billing) or null for no limit.")
    return float(budget)


def check_budget(budget: float | None, estimated_costs: float, what: str) -> None:
    """PaymentRequired when the estimated costs exceed the request's budget."""
    if budget is not None and estimated_costs > budget:
        raise errors.PaymentRequired(
            f"The estimated costs of {what}, {estimated_costs:g}, exceed its budget of "
            f"{budget:g}; raise the budget or leave it out.")


def cpu_limit(budget: float | None, settings: Settings,
              remaining_allowance: float | None) -> float | None:
    """The CPU-seconds a run may use: the budget at the current rate and what is left of the
    user's weekly allowance, whichever is less (None: no limit)."""
    limits = []
    if budget is not None and settings.billing_rate > 0:
        limits.append(budget / settings.billing_rate)
    if remaining_allowance is not None:
        limits.append(remaining_allowance)
    return min(limits) if limits else None


# --- compute allowances and the usage they count ---------------------------------------------
class ComputeAllowance(Base):
    """CPU-seconds a user may use per rolling week (set by an administrator)."""

    __tablename__ = "compute_allowances"

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    cpu_seconds_per_week: Mapped[float] = mapped_column(Float)


class UsageRecord(Base):
    """The CPU time and costs of one finished job run or synchronous request."""

    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "job" or "sync"
    ref: Mapped[str] = mapped_column(String(64))  # job id or request id
    cpu_seconds: Mapped[float] = mapped_column(Float)
    costs: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Allowance:
    """A user's weekly compute allowance and what the last 7 days used of it."""

    cpu_seconds_per_week: float | None
    used_cpu_seconds: float

    @property
    def remaining(self) -> float | None:
        if self.cpu_seconds_per_week is None:
            return None
        return max(0.0, self.cpu_seconds_per_week - self.used_cpu_seconds)

    def to_json(self) -> dict[str, Any]:
        return {"cpu_seconds_per_week": self.cpu_seconds_per_week,
                "used_cpu_seconds": round(self.used_cpu_seconds, 3),
                "remaining_cpu_seconds": None if self.remaining is None
                else round(self.remaining, 3)}


class ComputeBudgets:
    """Allowances per user and the usage records they are counted against."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, user_id: str, cpu_seconds_per_week: float | None) -> None:
        """Give a user an allowance; None removes it (no limit)."""
        with self.db.session() as session:
            row = session.get(ComputeAllowance, user_id)
            if cpu_seconds_per_week is None:
                if row is not None:
                    session.delete(row)
            elif row is None:
                session.add(ComputeAllowance(user_id=user_id,
                                             cpu_seconds_per_week=cpu_seconds_per_week))
            else:
                row.cpu_seconds_per_week = cpu_seconds_per_week

    def allowance(self, user_id: str, now: datetime | None = None) -> Allowance:
        now = now or datetime.now(UTC)
        with self.db.session() as session:
            row = session.get(ComputeAllowance, user_id)
            used = session.scalar(select(func.coalesce(func.sum(UsageRecord.cpu_seconds), 0.0))
                                  .where(UsageRecord.user_id == user_id,
                                         UsageRecord.time > now - WEEK))
        return Allowance(None if row is None else row.cpu_seconds_per_week, float(used or 0))

    def all_allowances(self) -> dict[str, float]:
        with self.db.session() as session:
            return {row.user_id: row.cpu_seconds_per_week
                    for row in session.scalars(select(ComputeAllowance))}

    def record(self, user_id: str, kind: str, ref: str, cpu: float, costs: float) -> None:
        """Count a finished run against the user's allowance (records older than two weeks
        are dropped on the way: only the last 7 days count)."""
        now = datetime.now(UTC)
        with self.db.session() as session:
            session.add(UsageRecord(user_id=user_id, time=now, kind=kind, ref=ref,
                                    cpu_seconds=max(0.0, cpu), costs=max(0.0, costs)))
            session.execute(delete(UsageRecord).where(
                UsageRecord.time < now - 2 * WEEK))

    def check(self, user_id: str) -> Allowance:
        """PaymentRequired when the user's weekly allowance is used up."""
        allowance = self.allowance(user_id)
        remaining = allowance.remaining
        if remaining is not None and remaining <= 0:
            raise errors.PaymentRequired(
                f"Your compute allowance of {allowance.cpu_seconds_per_week:g} CPU-seconds per "
                f"week is used up ({allowance.used_cpu_seconds:.0f} s in the last 7 days); it "
                "frees up as older usage passes the 7 days, or an administrator raises it.")
        return allowance

