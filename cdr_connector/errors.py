"""Every error cdr-connector raises on purpose, split by what the caller must do.

`RetryableError`: the same call may succeed later (a transport fault, a 5xx, a broker that is
briefly away); the caller backs off and tries again, honouring `retry_after` when set.
`PermanentError`: trying again cannot help until a person changes something (credentials,
configuration, a missing topic, a fenced producer); the message says what to change.
`ApiContentError`: neither. The vendor's answer arrived whole, and asking the same again would
bring the same content (an answer over the size limit): never retried as if the transport had
failed, the caller works around it (a smaller page, a sweep) and keeps the stream going.

Third-party exceptions are converted where they enter the project, with `raise ... from exc`,
so the cause stays in the traceback.
"""

from __future__ import annotations


class CdrConnectorError(Exception):
    """The root of every error raised by cdr-connector."""


class RetryableError(CdrConnectorError):
    """A failure that may go away by itself; retry after a backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(CdrConnectorError):
    """A failure that needs a person to act; retrying cannot help."""


class ConfigError(PermanentError):
    """The settings are invalid; the message names the key and the fix."""


# --- the vendor API -------------------------------------------------------------------------


class ApiError(CdrConnectorError):
    """Base of errors from the vendor API."""


class ApiTransientError(ApiError, RetryableError):
    """Transport error, HTTP 5xx, `ret` 500 or an unparseable body: worth retrying."""


class TokenExpiredError(ApiTransientError):
    """`ret` 600: the token is unknown or expired; log in again and retry."""


class ApiRequestError(ApiError, PermanentError):
    """`ret` 400: the server rejected a parameter; a bug or a bad filter in the settings."""


class ApiAuthError(ApiError, PermanentError):
    """`ret` 601-604: the account, module or source IP is not authorised."""


class ApiContentError(ApiError):
    """The answer arrived but its content cannot be used as it is; see the module docstring."""


class AnswerTooLargeError(ApiContentError):
    """An answer exceeded `source.max_answer_bytes`; it was not read further."""


class ApiResponseError(ApiTransientError):
    """The body is not JSON or not the documented envelope (a proxy's error page, a truncated
    answer): retried like a transport fault, reported with what was wrong."""


# --- records ----------------------------------------------------------------------------------


class RecordError(PermanentError):
    """A single bill cannot be normalised or encoded; it goes to the dead-letter topic."""

    def __init__(self, message: str, *, stage: str, field: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.field = field


# --- Kafka ------------------------------------------------------------------------------------


class KafkaError(CdrConnectorError):
    """Base of errors from Kafka."""


class KafkaTransientError(KafkaError, RetryableError):
    """The broker is unreachable or a request timed out; retry the same work."""


class TransactionAbortRequiredError(KafkaTransientError):
    """The current transaction must be aborted and its batch produced again."""


class ProducerFencedError(KafkaError, PermanentError):
    """Another instance with the same transactional.id has taken over; this one must stop."""


class TopicMissingError(KafkaError, PermanentError):
    """A topic the connector needs does not exist and topic creation is switched off."""


class KafkaFatalError(KafkaError, PermanentError):
    """The producer hit a fatal error and cannot continue."""
