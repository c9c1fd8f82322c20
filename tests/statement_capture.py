"""Which statement objects a piece of code runs: the hot path's statements are built once, so
a second event must run the very objects the first one did."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def statements_of(fn: Callable[[], Any]) -> list[Any]:
    """The statement objects `fn` executed on the engine, in order."""
    from sqlalchemy import event

    from call_downloader.db.engine import get_engine

    executed: list[Any] = []

    def note(_conn: Any, statement: Any, *_args: Any) -> None:
        executed.append(statement)

    engine = get_engine()
    event.listen(engine, "before_execute", note)
    try:
        fn()
    finally:
        event.remove(engine, "before_execute", note)
    return executed


def built_anew(first: list[Any], second: list[Any]) -> list[str]:
    """The statements of `second` that are not objects `first` executed already (the audio
    read, storage's own, aside), as SQL text."""
    seen = {id(statement) for statement in first}
    return [
        str(statement)
        for statement in second
        if id(statement) not in seen and "audio_chunks" not in str(statement)
    ]
