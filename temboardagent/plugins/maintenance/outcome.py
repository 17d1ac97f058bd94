"""What PostgreSQL really did: notices kept, skipped relations, final verdict.

VACUUM and ANALYZE do not fail when they skip a relation: PostgreSQL sends a
WARNING and the statement succeeds. The worker installs a
:class:`NoticeCollector` as the connection's ``notices`` (psycopg2 appends
each message to it), then asks :func:`verdict` whether the operation may be
reported ``done``:

- a single-relation operation that skipped anything (the table, one of its
  partitions, an index) failed, with PostgreSQL's message as its error;
- a database-wide operation lists what it skipped; it failed only when it
  skipped a relation the role may process (a lock not available...), not
  when it skipped those the role is not allowed to process.

psycopg2 gives notices as text (``"WARNING:  message\\n"``), without SQLSTATE,
in the server's ``lc_messages``: the worker asks for English messages when
its role may set them (superuser). Recognized texts are those of PostgreSQL
12 to 18. Messages in another language are kept too; for a single relation,
the worker then checks the role's privileges itself (``denied`` of
:func:`verdict`), so a translated permission warning still fails it.

Everything here is pure (no I/O) and bounded: whatever the number of
notices, at most :data:`MAX_NOTICES` texts of at most
:data:`MAX_NOTICE_LENGTH` characters and :data:`MAX_SKIPPED` skipped
relations are kept; counters stay exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

MAX_NOTICES = 100
MAX_NOTICE_LENGTH = 1000
MAX_SKIPPED = 1000

#: why a relation was skipped (``Skip.cause``)
DENIED = "denied"  # the role may not process it: expected, not a failure of a database-wide run
LOCKED = "locked"  # SKIP_LOCKED and the lock was not available
GONE = "gone"  # dropped while the operation ran
OTHER = "other"  # any other skip (invalid index with CONCURRENTLY, non-table...)

_SEVERITY = re.compile(r"^([A-Z]+):\s+(.*)$", re.S)
#: severities of English messages (libpq's texts of the 'S' field)
ENGLISH_SEVERITIES = frozenset({"DEBUG", "LOG", "INFO", "NOTICE", "WARNING"})

# English messages of PostgreSQL 12-18 (vacuum.c, analyze.c, indexcmds.c).
_SKIPS: tuple[tuple[re.Pattern, str], ...] = (
    # 16+: permission denied to vacuum "t", skipping it
    (re.compile(r'^permission denied to (?:vacuum|analyze) "(.*)", skipping it$', re.S), DENIED),
    # 12-15: skipping "t" --- only table or database owner can vacuum it (and variants)
    (
        re.compile(
            r'^skipping "(.*)" --- only (?:superuser|superuser or database owner'
            r"|table or database owner) can (?:vacuum|analyze) it$",
            re.S,
        ),
        DENIED,
    ),
    (re.compile(r'^skipping (?:vacuum|analyze) of "(.*)" --- lock not available$', re.S), LOCKED),
    (
        re.compile(r'^skipping (?:vacuum|analyze) of "(.*)" --- relation no longer exists$', re.S),
        GONE,
    ),
)
# Any other skip: "cannot reindex invalid index "s.i" concurrently, skipping", ...
_OTHER_SKIP = re.compile(r"\bskipping\b", re.I)
_QUOTED = re.compile(r'"(.+?)"')


@dataclass(frozen=True)
class Notice:
    """A message PostgreSQL sent: its severity word and its text."""

    severity: str  # e.g. WARNING, NOTICE, INFO ("" when not recognized)
    message: str


@dataclass(frozen=True)
class Skip:
    """A relation PostgreSQL skipped, as its message names it."""

    relation: str  # unqualified name as in the message (schema.name for some)
    cause: str  # DENIED, LOCKED, GONE or OTHER
    message: str  # PostgreSQL's message

    @property
    def allowed(self) -> bool:
        """True when the role may process the relation (so skipping it is a failure)."""
        return self.cause in (LOCKED, OTHER)


def parse_notice(text: str) -> Notice:
    """``"WARNING:  skipping ...\\n"`` -> Notice("WARNING", "skipping ...")."""
    text = text.strip()
    match = _SEVERITY.match(text)
    if match is None:
        return Notice("", text)
    return Notice(match.group(1), match.group(2).strip())


def skip_of(notice: Notice) -> Skip | None:
    """The relation a WARNING says PostgreSQL skipped; None for any other notice."""
    if notice.severity != "WARNING":
        return None
    first_line = notice.message.split("\n", 1)[0]
    for pattern, cause in _SKIPS:
        match = pattern.match(first_line)
        if match:
            return Skip(match.group(1), cause, first_line)
    if _OTHER_SKIP.search(first_line):
        quoted = _QUOTED.search(first_line)
        return Skip(quoted.group(1) if quoted else "", OTHER, first_line)
    return None


@dataclass
class NoticeCollector:
    """Replaces ``connection.notices``: psycopg2 calls :meth:`append` per message.

    Keeps the first :data:`MAX_NOTICES` texts (each cut to
    :data:`MAX_NOTICE_LENGTH` characters) and the first :data:`MAX_SKIPPED`
    skips; counts all of them.
    """

    notices: list[str] = field(default_factory=list)
    notices_count: int = 0
    skipped: list[Skip] = field(default_factory=list)
    skipped_count: int = 0
    #: the first skip of a relation the role may process
    first_failure: Skip | None = None
    #: the first message not in English (server or role ``lc_messages``)
    first_foreign: str | None = None

    def append(self, text: Any) -> None:
        text = str(text)
        self.notices_count += 1
        if len(self.notices) < MAX_NOTICES:
            self.notices.append(_cut(text.strip(), MAX_NOTICE_LENGTH))
        notice = parse_notice(text)
        if notice.severity not in ENGLISH_SEVERITIES and self.first_foreign is None:
            self.first_foreign = _cut(text.strip(), MAX_NOTICE_LENGTH)
        skip = skip_of(notice)
        if skip is None:
            return
        self.skipped_count += 1
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append(
                Skip(_cut(skip.relation, 200), skip.cause, _cut(skip.message, MAX_NOTICE_LENGTH))
            )
        if skip.allowed and self.first_failure is None:
            self.first_failure = skip

    def extend(self, texts: Iterable[Any]) -> None:
        for text in texts:
            self.append(text)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def verdict(collector: NoticeCollector, single: bool, denied: str | None = None) -> str | None:
    """The error of an operation that ran without error, or None when it is done.

    ``single``: the operation named one table or index (anything skipped is a
    failure); otherwise it covered a database (only skips of relations the
    role may process are). ``denied``: for a single relation, why the role may
    not process it, when the worker checked (messages not in English): the
    operation then failed, with PostgreSQL's message when it sent one.
    """
    if single:
        if collector.skipped_count:
            first = collector.first_failure or collector.skipped[0]
            return first.message
        if denied is not None:
            return collector.first_foreign or denied
        return None
    failure = collector.first_failure
    if failure is None:
        return None
    return f"PostgreSQL skipped a relation it was allowed to process: {failure.message}"


def details(
    collector: NoticeCollector,
    qualify: Callable[[list[str]], dict[str, str]] | None = None,
) -> dict[str, Any]:
    """JSON-ready ``{"notices", "skipped", "skipped_count"}`` of a run.

    ``qualify`` maps relation names of messages to ``schema.name`` (names it
    does not know are kept as the message gives them).
    """
    names = sorted({skip.relation for skip in collector.skipped if skip.relation})
    qualified = qualify(names) if qualify is not None and names else {}
    return {
        "notices": list(collector.notices),
        "skipped": [
            {"relation": qualified.get(skip.relation, skip.relation), "reason": skip.message}
            for skip in collector.skipped
        ],
        "skipped_count": collector.skipped_count,
    }
