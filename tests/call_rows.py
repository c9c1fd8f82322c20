"""A call row as the upload leaves it (status `received`), with the source user it needs:
for tests of the pipeline's statements against the real database."""

from __future__ import annotations

import uuid


def received_call() -> uuid.UUID:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call
    from call_downloader.security.users import create_user

    with unit_of_work() as session:
        source = create_user(session, f"src-{uuid.uuid4().hex[:8]}", "source")
        session.flush()
        call = Call(id=uuid.uuid4(), source_id=source.id, status="received")
        session.add(call)
        return call.id
