"""Which statement objects a piece of code runs: the hot path's statements are built once, so
a second event must run the very objects the first one did, and find them compiled already."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Executed:
    statement: Any
    # SQLAlchemy compiled it for this execution: a cache miss, or a statement without a cache
    # key (those are compiled at every execution).
    compiled_anew: bool


def statements_of(fn: Callable[[], Any]) -> list[Executed]:
    """The statements `fn` executed on the engine, in order."""
    from sqlalchemy import event
    from sqlalchemy.engine.interfaces import CacheStats

    from call_downloader.db.engine import get_engine

    executed: list[Executed] = []

    def note(
        _conn: Any, statement: Any, _multi: Any, _params: Any, _opts: Any, result: Any
    ) -> None:
        outcome = getattr(getattr(result, "context", None), "cache_hit", None)
        anew = outcome in (CacheStats.CACHE_MISS, CacheStats.NO_CACHE_KEY)
        executed.append(Executed(statement, compiled_anew=anew))

    engine = get_engine()
    event.listen(engine, "after_execute", note)
    try:
        fn()
    finally:
        event.remove(engine, "after_execute", note)
    return executed


def built_anew(first: list[Executed], second: list[Executed]) -> list[str]:
    """The statements of `second`, as SQL text, that SQLAlchemy compiled again, or that are
    not objects `first` executed already (the audio read aside: storage builds its cacheable
    statement per chunk)."""
    seen = {id(e.statement) for e in first}
    return [
        str(e.statement)
        for e in second
        if e.compiled_anew
        or (id(e.statement) not in seen and "audio_chunks" not in str(e.statement))
    ]
