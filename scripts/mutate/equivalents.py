"""Equivalent mutants: changes no test can see, because the program behaves the same.

A survivor of this kind says nothing about the tests, so it is left out of the sample (and
of the score) by name: its module, its function, and its line before and after as the
report shows them (stripped), never by line number, so an edit elsewhere in the module does
not lose it. Each entry says why no behaviour changes; an entry that matches no mutant any
more (the line was rewritten) is reported as stale, to be removed or brought up to date.

Only a mutant that cannot change behaviour belongs here. One that changes behaviour no test
checks yet is a missing test, however unimportant it looks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scripts.mutate.operators import Mutant
from scripts.mutate.report import changed_lines


@dataclass(frozen=True, slots=True)
class Equivalent:
    """A mutant known to be equivalent: where it is, what it changes, and why that is no change."""

    path: str
    function: str
    before: str
    after: str
    reason: str

    def matches(self, mutant: Mutant, source: str) -> bool:
        if (mutant.path, mutant.function) != (self.path, self.function):
            return False
        return changed_lines(source, mutant) == (self.before, self.after)


def _in(path: str, function: str, reason: str, *changes: tuple[str, str]) -> list[Equivalent]:
    return [Equivalent(f"cdr_connector/{path}", function, a, b, reason) for a, b in changes]


_SLICING_NOTHING = "at 0 the slice is empty, so cutting 0 entries or skipping the cut is the same"

_ARGS_KEPT = (
    "BaseException.__new__ keeps the message in args already; str() and repr() read it there"
)

_TRUTH_ONLY = "every caller tests the answer's truth only, and None is as false as False"

_SLOTS_ONLY = "__slots__ saves memory; no code adds attributes a test could see refused"

_ONE_ARGUMENT = (
    "confluent-kafka raises KafkaException with its KafkaError as the one argument, so "
    "args[0] and args[-1] are the same"
)


def _last_argument(path: str, function: str, *lines: str) -> list[Equivalent]:
    """`exc.args[0]` -> `exc.args[-1]` on each of `lines`, a KafkaException's one argument."""
    return _in(
        path,
        function,
        _ONE_ARGUMENT,
        *((line, line.replace("args[0]", "args[-1]")) for line in lines),
    )


KNOWN: tuple[Equivalent, ...] = (
    *_last_argument(
        "kafka_clients.py",
        "validate_client_config",
        "raise ConfigError(_describe_refusal(exc.args[0].str(), client_config)) from None",
    ),
    *_last_argument(
        "kafka_sink.py", "TransactionalSink._commit_with_retries", "error = exc.args[0]"
    ),
    *_last_argument("kafka_sink.py", "_convert", "error: LibKafkaError = exc.args[0]"),
    *_in(
        "kafka_sink.py",
        "TransactionalSink._commit_with_retries",
        "the last attempt raises (`attempt == attempts`), so the range never reaches a fourth",
        ("for attempt in range(1, attempts + 1):", "for attempt in range(1, attempts + 2):"),
    ),
    *_last_argument(
        "topics.py",
        "await_topic_changes",
        "if exc.args[0].code() != LibKafkaError.TOPIC_ALREADY_EXISTS:",
    ),
    *_in("brake.py", "Brake.observe", _TRUTH_ONLY, ("return False", "return None")),
    *_in("brake.py", "Brake.commit_failed", _TRUTH_ONLY, ("return False", "return None")),
    *_in("brake.py", "Brake._engage", _TRUTH_ONLY, ("return False", "return None")),
    *_in(
        "bill.py",
        "LocalClock",
        _SLOTS_ONLY,
        ('__slots__ = ("_max_hours", "_zone", "hours")', "pass"),
    ),
    *_in(
        "bill.py",
        "LocalClock._hour_start",
        "_HOUR_PREFIX has just required a space at index 10, and int() ignores the space",
        (
            "int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]), int(prefix[11:13]),",
            "int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]), int(prefix[10:13]),",
        ),
    ),
    *_in(
        "records.py",
        "_reread_after",
        "a reading with fold=1 never equals a start read with fold=0 (aecca13)",
        ("if moment < start:", "if moment <= start:"),
    ),
    *_in(
        "redaction.py",
        "Redactor.__init__",
        "_reach is read only when _beginning is set, and _compile sets both",
        ("self._reach = 0", "self._reach = -1"),
        ("self._reach = 0", "self._reach = 1"),
        ("self._reach = 0", "pass"),
    ),
    *_in(
        "committer.py",
        "Committer._on_brake",
        "Brake._engage sets kind and reason together, so neither is ever None here; the "
        "assert only narrows their types",
        (
            "assert kind is not None and reason is not None",
            "assert (kind is not None or reason is not None)",
        ),
        ("assert kind is not None and reason is not None", "pass"),
    ),
    *_in(
        "http.py",
        "_GuardedConnection.eof_received",
        "aiohttp's RequestHandler.eof_received does nothing (web_protocol.py: `pass`); it is "
        "passed on only so that the handler sees every event of its transport",
        (
            "self._handler.eof_received()  # aiohttp closes on EOF: returning None says so",
            "pass  # aiohttp closes on EOF: returning None says so",
        ),
    ),
    *_in(
        "http.py",
        "_GuardedConnection.pause_writing",
        "flow control only: the client gets the same bytes; what changes is how much of an "
        "answer (here at most the metrics page) aiohttp buffers while a client reads slowly",
        ("self._handler.pause_writing()", "pass"),
    ),
    *_in(
        "http.py",
        "_GuardedConnection._cancel_deadline",
        "a deadline left running fires on a connection that has its headers (expire() checks) "
        "or was released already (release() counts it only while open, and aborting a closed "
        "transport does nothing)",
        ("self.deadline.cancel()", "pass"),
    ),
    *_in(
        "http.py",
        "_GuardedConnection.resume_writing",
        "flow control only, as pause_writing",
        ("self._handler.resume_writing()", "pass"),
    ),
    *_in(
        "http.py",
        "_Refused.connection_made",
        "the event loop's TCP transports are always asyncio.Transport; the assert only "
        "narrows the type for abort()",
        ("assert isinstance(transport, asyncio.Transport)", "pass"),
    ),
    *_in(
        "http.py",
        "ThrottledLog.__init__",
        "_last_args is read only by _report_left_out, which is scheduled only by an event() "
        "that has just set it",
        ("self._last_args: tuple[object, ...] = ()", "pass"),
    ),
    *_in(
        "http.py",
        "_AcceptErrorLog.__init__",
        "start_ops_server installs the handler as soon as it makes it, and install() sets "
        "_installed, so uninstall() never reads the value __init__ gives it",
        ("self._installed = False", "pass"),
    ),
    *_in(
        "fleet.py",
        "Membership._changed",
        "run() sets _loop before the consumer that calls back here exists; the assert only "
        "narrows its type",
        ("assert self._loop is not None", "pass"),
    ),
    *_in(
        "fleet.py",
        "Membership.__init__",
        "run() sets _loop before the consumer that reads it exists; no code reads it earlier",
        ("self._loop: asyncio.AbstractEventLoop | None = None", "pass"),
    ),
    *_in(
        "errors.py",
        "RetryableError.__init__",
        _ARGS_KEPT,
        ("super().__init__(message)", "pass"),
    ),
    *_in(
        "errors.py",
        "RecordError.__init__",
        _ARGS_KEPT,
        ("super().__init__(message)", "pass"),
    ),
    *_in(
        "committer.py",
        "Committer._attempt",
        "one summary is made per batch just above, so the lengths never differ",
        (
            "for batch, summary in zip(batches, summaries, strict=True):",
            "for batch, summary in zip(batches, summaries, strict=False):",
        ),
    ),
    *_in(
        "committer.py",
        "Committer._advance_state",
        "the vendor's count is never negative (api/models refuses a negative totalitems), so "
        "max() with it is the same from 0 or from -1",
        (
            "state.hour_counts[hour] = max(state.hour_counts.get(hour, 0), count)",
            "state.hour_counts[hour] = max(state.hour_counts.get(hour, -1), count)",
        ),
    ),
    *_in(
        "api/tokens.py",
        "TokenKeeper._log_in",
        "generations are only compared for equality, and each login still gets a new one",
        ("self._generation += 1", "self._generation += 2"),
    ),
    *_in(
        "bill_writer.py",
        "BillWriter",
        _SLOTS_ONLY,
        ("__slots__ = ( …", "pass"),
    ),
    *_in("batch_writer.py", "BatchWriter", _SLOTS_ONLY, ("__slots__ = ( …", "pass")),
    *_in(
        "batch_writer.py",
        "RecordTallies",
        _SLOTS_ONLY,
        (
            '__slots__ = ("billed_seconds", "calls", "end_times_ms", "start_hours", '
            '"unknown_fields")',
            "pass",
        ),
    ),
    *_in(
        "bill_writer.py",
        "<module>",
        "the memos' bound trades memory for speed; the bytes written are the same at any "
        "bound, and the bounding itself is tested with a bound of 50 (test_bill_writer.py)",
        ("_MAX_MEMO = 1 << 16", "_MAX_MEMO = 1 << 17"),
        ("_MAX_MEMO = 1 << 16", "_MAX_MEMO = 1 << 15"),
    ),
    *_in(
        "bill_writer.py",
        "_common_text",
        "a memo: without the store the same chunk is made again each time, the bytes written "
        "are the same",
        ("_COMMON_TEXTS[value] = chunk", "pass"),
    ),
    *_in(
        "kafka_clients.py",
        "<module>",
        "the config check's clients are never polled, and confluent-kafka hands librdkafka's "
        "log lines to a Python logger only in poll(): no record ever reaches this one (the "
        "logger itself is what keeps librdkafka from printing to stderr)",
        ("_SILENT_LOG.addHandler(logging.NullHandler())", "pass"),
    ),
    *_in(
        "kafka_clients.py",
        "validate_client_config",
        "without it the clients keep the connector's own librdkafka logger: a Python logger "
        "too, so librdkafka prints nothing to stderr, and as the clients are never polled it "
        "gets no line either (test_the_check_says_nothing_of_the_brokers_it_was_not_given "
        "passes both ways); the silent logger only guards against a confluent-kafka that "
        "would serve the log queue on close",
        (
            'config["logger"] = _SILENT_LOG  # not even a warning about the missing brokers',
            "pass  # not even a warning about the missing brokers",
        ),
    ),
    *_in(
        "metrics.py",
        "BatchHistogram.collect",
        "a child's counts are made with one entry per bound and one for +Inf, so the lengths "
        "never differ",
        (
            "for bound, count in zip((*self._bounds, math.inf), counts, strict=True):",
            "for bound, count in zip((*self._bounds, math.inf), counts, strict=False):",
        ),
    ),
    *_in(
        "logs.py",
        "<module>",
        "only the names of a LogRecord's attributes are kept, never their values",
        (
            'vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}',
            'vars(logging.LogRecord("", 0, "", -1, "", None, None)).keys() | {"message", '
            '"asctime"}',
        ),
        (
            'vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}',
            'vars(logging.LogRecord("", 0, "", 1, "", None, None)).keys() | {"message", "asctime"}',
        ),
        (
            'vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}',
            'vars(logging.LogRecord("", -1, "", 0, "", None, None)).keys() | {"message", '
            '"asctime"}',
        ),
        (
            'vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}',
            'vars(logging.LogRecord("", 1, "", 0, "", None, None)).keys() | {"message", "asctime"}',
        ),
    ),
    *_in(
        "__main__.py",
        "<module>",
        "the alias is only named in annotations, which `from __future__ import annotations` "
        "leaves unevaluated",
        ('Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"', "pass"),
    ),
    *_in(
        "app.py",
        "Connector",
        "__post_init__ sets _sources whether or not the class declares it; the field was "
        "neither an argument of __init__ nor in the repr, and connectors are never compared",
        ("_sources: dict[str, Settings] = field(init=False, repr=False)", "pass"),
    ),
    *_in(
        "checks.py",
        "run_checks",
        "only whether any check failed is read (`1 if failed else 0`), never how many",
        ("failed += 1", "failed += 2"),
    ),
    *_in(
        "settings_doc.py",
        "type_name",
        "a list[...] has exactly one type argument, so its first is its last",
        (
            "if origin is list and isinstance(arguments[0], type) and "
            "issubclass(arguments[0], BaseModel):",
            "if origin is list and isinstance(arguments[0], type) and "
            "issubclass(arguments[-1], BaseModel):",
        ),
        (
            "if origin is list and isinstance(arguments[0], type) and "
            "issubclass(arguments[0], BaseModel):",
            "if origin is list and isinstance(arguments[-1], type) and "
            "issubclass(arguments[0], BaseModel):",
        ),
    ),
    *_in(
        "checkpoint.py",
        "CommittedIds._enforce_bound",
        _SLICING_NOTHING,
        ("if excess > 0:", "if excess >= 0:"),
        ("if excess > 0:", "if excess > -1:"),
    ),
    *_in(
        "checkpoint.py",
        "CheckpointState.add_dead_letter_fingerprints",
        _SLICING_NOTHING,
        (
            "if excess > 0:  # this runs for every transaction: no copy of the dict unless needed",
            "if excess >= 0:  # this runs for every transaction: no copy of the dict unless needed",
        ),
        (
            "if excess > 0:  # this runs for every transaction: no copy of the dict unless needed",
            "if excess > -1:  # this runs for every transaction: no copy of the dict unless needed",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Split:
    """A module's mutants parted into those to run and the equivalents left out."""

    kept: list[Mutant]
    excluded: list[tuple[Mutant, Equivalent]]


def split(mutants: Sequence[Mutant], source: str, known: Iterable[Equivalent] = KNOWN) -> Split:
    """`mutants` of one module (all from `source`), without the known equivalents."""
    entries = list(known)
    kept: list[Mutant] = []
    excluded: list[tuple[Mutant, Equivalent]] = []
    for mutant in mutants:
        entry = next((e for e in entries if e.matches(mutant, source)), None)
        if entry is None:
            kept.append(mutant)
        else:
            excluded.append((mutant, entry))
    return Split(kept, excluded)


def stale(
    modules: Iterable[str],
    excluded: Mapping[str, Sequence[tuple[Mutant, Equivalent]]],
    known: Iterable[Equivalent] = KNOWN,
) -> list[Equivalent]:
    """Entries for the measured `modules` that matched no mutant of them."""
    measured = set(modules)
    used = {id(entry) for pairs in excluded.values() for _, entry in pairs}
    return [e for e in known if e.path in measured and id(e) not in used]
