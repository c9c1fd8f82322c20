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


def _seconds(start: Any, end: Any) -> ColumnElement[float]:
    return extract("epoch", end - start)


def get_stats(request: flask.Request) -> Any:
    require(request, *STAFF)
    args = params.query(request, {"hours", "since", "until"})
    since, until = _window(args)
    in_window = (Call.received_at >= since, Call.received_at < until)
    with unit_of_work() as session:
        # Bucket in UTC whatever the session's TimeZone is (timezone() gives UTC wall time).
        hour = func.date_trunc("hour", func.timezone("UTC", Call.received_at)).label("hour")
        per_hour: dict[str, dict[str, int]] = {}
        cursor = since.replace(minute=0, second=0, microsecond=0)
        while cursor < until:
            per_hour[cursor.isoformat()] = dict.fromkeys(CallStatus.ALL, 0)
            cursor += timedelta(hours=1)
        for bucket, status, n in session.execute(
            select(hour, Call.status, func.count()).where(*in_window).group_by(hour, Call.status)
        ):
            key = bucket.replace(tzinfo=UTC).isoformat()
            per_hour.setdefault(key, dict.fromkeys(CallStatus.ALL, 0))[status] = n

        latencies = {}
        for stage, (start, end) in STAGES.items():
            seconds = _seconds(start, end)
            row = session.execute(
                select(
                    func.count(seconds),
                    func.avg(seconds),
                    func.percentile_cont(0.5).within_group(seconds),
                    func.percentile_cont(0.95).within_group(seconds),
                    func.max(seconds),
                ).where(*in_window, start.is_not(None), end.is_not(None))
            ).one()
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
