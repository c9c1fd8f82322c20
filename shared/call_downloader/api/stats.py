"""Numbers for the dashboard (staff): one request, one window.

    GET /api/v1/stats?hours=24   (or since=...&until=...; at most 31 days)

- `calls_per_hour`: calls received in each hour of the window, by their current status;
- `latencies`: seconds between the stage timestamps (received -> analyzed -> processed ->
  delivered, and end to end) of calls received in the window: count, mean, p50, p95, max;
- `audio_minutes`: minutes of audio processed by the AI in the window (processed_at in it);
- `failures`: failed calls received in the window, by stage and reason;
- `dead_letters`: dead-lettered deliveries now, in total and per destination.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import flask
from sqlalchemy import ColumnElement, extract, func, select

from call_downloader.api import params
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Call, CallStatus, Delivery, DeliveryStatus, Destination, Role
from call_downloader.http.routing import Router
from call_downloader.security.identity import require

STAFF = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
MAX_HOURS = 31 * 24
STAGES = {
    "analyze": (Call.received_at, Call.analyzed_at),
    "ai": (Call.analyzed_at, Call.processed_at),
    "deliver": (Call.processed_at, Call.delivered_at),
    "total": (Call.received_at, Call.delivered_at),
}


def register(router: Router) -> None:
    router.route("/api/v1/stats", methods=["GET"])(get_stats)


def _window(args: dict[str, str]) -> tuple[datetime, datetime]:
    since, until = params.date_time(args, "since"), params.date_time(args, "until")
    if args.get("hours") and (since or until):
        raise params.bad("hours", "give either hours or since/until")
    now = datetime.now(UTC)
    if since is None:
        hours = params.integer(args, "hours", 24, 1, MAX_HOURS)
        end = until or now
        # Whole hours, so the first and last bars are comparable with the others.
        end = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return end - timedelta(hours=hours), end
    until = until or now
    if since >= until:
        raise params.bad("since", "must be before until")
    if until - since > timedelta(hours=MAX_HOURS):
        raise params.bad("since", f"the window is at most {MAX_HOURS} hours")
    return since, until


def _seconds(start: Any, end: Any, sqlite: bool) -> ColumnElement[float]:
    if sqlite:  # embedded mode: no interval arithmetic, Julian days instead
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


def _hour(sqlite: bool) -> ColumnElement[Any]:
    if sqlite:  # stored as UTC text: the hour is its first 13 characters
        return func.strftime("%Y-%m-%d %H:00:00", Call.received_at).label("hour")
    # Bucket in UTC whatever the session's TimeZone is (timezone() gives UTC wall time).
    return func.date_trunc("hour", func.timezone("UTC", Call.received_at)).label("hour")


def _percentile(ordered: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    at = fraction * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _latency(session: Any, seconds: ColumnElement[float], where: Any, sqlite: bool) -> Any:
    """count, mean, p50, p95 and max of `seconds` over the rows `where` selects."""
    if not sqlite:
        return session.execute(
            select(
                func.count(seconds),
                func.avg(seconds),
                func.percentile_cont(0.5).within_group(seconds),
                func.percentile_cont(0.95).within_group(seconds),
                func.max(seconds),
            ).where(*where)
        ).one()
    # SQLite has no percentile_cont; the embedded mode's few rows are summed up here.
    ordered = sorted(float(v) for v in session.scalars(select(seconds).where(*where)))
    if not ordered:
        return 0, None, None, None, None
    return (
        len(ordered),
        sum(ordered) / len(ordered),
        _percentile(ordered, 0.5),
        _percentile(ordered, 0.95),
        ordered[-1],
    )


def get_stats(request: flask.Request) -> Any:
    require(request, *STAFF)
    args = params.query(request, {"hours", "since", "until"})
    since, until = _window(args)
    in_window = (Call.received_at >= since, Call.received_at < until)
    with unit_of_work() as session:
        sqlite = session.get_bind().dialect.name == "sqlite"
        hour = _hour(sqlite)
        per_hour: dict[str, dict[str, int]] = {}
        cursor = since.replace(minute=0, second=0, microsecond=0)
        while cursor < until:
            per_hour[cursor.isoformat()] = dict.fromkeys(CallStatus.ALL, 0)
            cursor += timedelta(hours=1)
        for bucket, status, n in session.execute(
            select(hour, Call.status, func.count()).where(*in_window).group_by(hour, Call.status)
        ):
            if isinstance(bucket, str):
                bucket = datetime.fromisoformat(bucket)
            key = bucket.replace(tzinfo=UTC).isoformat()
            per_hour.setdefault(key, dict.fromkeys(CallStatus.ALL, 0))[status] = n

        latencies = {}
        for stage, (start, end) in STAGES.items():
            where = (*in_window, start.is_not(None), end.is_not(None))
            row = _latency(session, _seconds(start, end, sqlite), where, sqlite)
            latencies[stage] = {
                "count": int(row[0] or 0),
                "mean": _num(row[1]),
                "p50": _num(row[2]),
                "p95": _num(row[3]),
                "max": _num(row[4]),
            }

        audio_seconds, audio_calls = session.execute(
            select(func.coalesce(func.sum(Call.duration_seconds), 0), func.count()).where(
                Call.processed_at >= since,
                Call.processed_at < until,
                Call.duration_seconds.is_not(None),
            )
        ).one()

        failures = [
            {"stage": stage, "reason": reason, "count": n}
            for stage, reason, n in session.execute(
                select(Call.error_stage, Call.error_reason, func.count())
                .where(*in_window, Call.status == CallStatus.FAILED)
                .group_by(Call.error_stage, Call.error_reason)
                .order_by(func.count().desc())
            )
        ]

        dead_rows = session.execute(
            select(Destination.id, Destination.name, func.count())
            .select_from(Delivery)
            .join(Destination, Destination.id == Delivery.destination_id)
            .where(Delivery.status == DeliveryStatus.DEAD)
            .group_by(Destination.id, Destination.name)
            .order_by(func.count().desc())
        ).all()
        totals = dict.fromkeys(CallStatus.ALL, 0)
        for counts in per_hour.values():
            for status, n in counts.items():
                totals[status] += n

    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "totals": totals,
        "calls_per_hour": [{"hour": h, "counts": c} for h, c in sorted(per_hour.items())],
        "latencies": latencies,
        "audio_minutes": round(float(audio_seconds) / 60.0, 2),
        "audio_calls": int(audio_calls),
        "failures": failures,
        "dead_letters": {
            "total": sum(n for _, _, n in dead_rows),
            "by_destination": [
                {"destination_id": str(i), "destination": name, "count": n}
                for i, name, n in dead_rows
            ],
        },
    }


def _num(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
