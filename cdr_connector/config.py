"""The one validated settings object.

Settings come from, in rising precedence: the defaults below, a TOML file (`--config` or
`CDR_CONFIG`), and `CDR_`-prefixed environment variables with `__` between sections
(`CDR_KAFKA__BOOTSTRAP_SERVERS`). Credentials may also come from files (`accesskey_file`), the
way Kubernetes mounts secrets. Unknown keys are rejected, so a typo never silently falls back to
a default. Every model is frozen: the running connector cannot change its own configuration.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import typing
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, cast
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from cdr_connector.errors import ConfigError

# The file given to load_settings; a context variable rather than the environment, so loading
# settings never changes the process's environment.
_config_file: ContextVar[str | None] = ContextVar("cdr_config_file", default=None)

ENV_PREFIX = "CDR_"
CONFIG_PATH_ENV = "CDR_CONFIG"

# Every number has an upper bound: past it a value is a slip (a unit, an extra zero, `inf`),
# refused with the key and the range, never an overflow deep in librdkafka (whose times are
# 32-bit milliseconds) or in date arithmetic.
HOUR = 3600.0
DAY = 24 * HOUR
PositiveSeconds = Annotated[float, Field(gt=0, le=DAY)]
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Filters(_Section):
    """GetBill filters; empty strings mean 'all', exactly as the vendor API takes them."""

    direction: Literal[1, 2, 3] = Field(
        default=3, description="GetBill filter: 1 incoming calls, 2 outgoing, 3 both"
    )
    callmethod: Annotated[int, Field(ge=0, le=6)] = Field(
        default=0,
        description="GetBill filter: 0 any call method, or one of the vendor's 1-6 "
        "(extension to extension, manual dial, API call, API double call, predictive, IVR/group)",
    )
    extnumber: tuple[str, ...] = Field(
        default=(), description="GetBill filter: only these extensions"
    )
    destnumber: str = Field(default="", description="GetBill filter: only calls to this number")
    userid: str = Field(default="", description="GetBill filter: the custom employee id")
    memberid: str = Field(default="", description="GetBill filter: the custom member id")
    chengshudu: str = Field(default="", description="GetBill filter: the custom maturity field")
    customuuid: str = Field(default="", description="GetBill filter: the custom customer id")

    def as_form(self) -> dict[str, str]:
        return {
            "direction": str(self.direction),
            "callmethod": str(self.callmethod),
            "extnumber": ",".join(self.extnumber),
            "destnumber": self.destnumber,
            "userid": self.userid,
            "memberid": self.memberid,
            "chengshudu": self.chengshudu,
            "customuuid": self.customuuid,
        }


class SourceSettings(_Section):
    """One vendor account: where it is, how to log in, and its PBX's clock."""

    name: str = Field(
        default="default",
        description="name of this vendor account; part of the `transactional.id`, the state key "
        "and every record",
    )
    api_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://127.0.0.1:8080/"), description="the vendor API's base URL"
    )
    appid: str = Field(default="", description="the vendor account's appid (required)")
    accesskey: SecretStr = Field(
        default=SecretStr(""),
        description="the vendor account's access key (required, here or in "
        "`source.accesskey_file`); never logged",
    )
    accesskey_file: Path | None = Field(
        default=None, description="a file holding the access key, as Kubernetes mounts secrets"
    )
    timezone: str = Field(
        default="Asia/Shanghai",
        description="the PBX's IANA time zone; record times are converted to UTC",
    )
    request_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=30.0, description="timeout of every API request"
    )
    verify_tls: bool = Field(default=True, description="check the vendor API's HTTPS certificate")
    ca_file: Path | None = Field(
        default=None, description="CA certificates for the vendor API, instead of the system's"
    )
    # A forward proxy for the vendor API: http:// only (https:// vendor URLs are tunnelled
    # through it with CONNECT). Its credentials come from its user:password part or from
    # `proxy_credentials_file` (one line, user:password). Unset: HTTPS_PROXY, HTTP_PROXY and
    # NO_PROXY of the environment apply.
    proxy_url: AnyHttpUrl | None = Field(
        default=None,
        description="an `http://` forward proxy for every vendor API request (https:// vendor "
        "URLs are tunnelled through it with `CONNECT`), credentials in its `user:password@` "
        "part or in `source.proxy_credentials_file`. Unset: `HTTPS_PROXY` / `HTTP_PROXY` / "
        '`NO_PROXY` of the environment apply (see "Security")',
    )
    proxy_credentials_file: Path | None = Field(
        default=None,
        description="a file holding one line `user:password` for `source.proxy_url`, read "
        "like `source.accesskey_file`",
    )
    token_renew_before_seconds: PositiveSeconds = Field(
        default=600.0, description="renew the login token this long before it expires"
    )
    # The vendor documents 12 hours; renewing early keeps requests off the expiry edge.
    token_lifetime_seconds: Annotated[float, Field(gt=0, le=7 * DAY)] = Field(
        default=12 * HOUR,
        description="how long a login token lasts (the vendor documents 12 hours); lower it "
        "when the vendor expires tokens sooner (`ret` 600 answers)",
    )
    # An answer is read up to this many bytes and refused beyond (a broken or hostile server
    # must not take the process past its memory limit). The default has room for a page of
    # 1,000 bills of 32 KiB each; typical pages are about 450 KB.
    max_answer_bytes: Annotated[int, Field(ge=64 * 1024, le=1024**3)] = Field(
        default=32 * 1024 * 1024,
        description='an API answer is read up to this size and refused beyond it (see "Bad '
        'data from the vendor")',
    )
    filters: Filters = Filters()
    # Taken out of `proxy_url` (which keeps no user:password) or read from the file.
    _proxy_credentials: tuple[str, SecretStr] | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _SOURCE_NAME.match(value):
            raise ValueError(
                "must be 1-64 characters of letters, digits, '.', '_' or '-' "
                "(it becomes part of the transactional.id and the state key)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                "is not an IANA time zone; use a name such as 'Asia/Shanghai'"
            ) from exc
        return value

    @field_validator("proxy_url")
    @classmethod
    def _http_proxy(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and value.scheme != "http":
            raise ValueError(
                "must be an http:// URL of a forward proxy (https:// vendor URLs are tunnelled "
                "through it with CONNECT); proxies reached over https:// are not supported"
            )
        return value

    @model_validator(mode="after")
    def _load_proxy_credentials(self) -> SourceSettings:
        url, path = self.proxy_url, self.proxy_credentials_file
        if url is None:
            if path is not None:
                raise ValueError(
                    "proxy_credentials_file is set but proxy_url is not: set source.proxy_url "
                    "to the proxy these credentials are for"
                )
            return self
        in_url = url.username is not None or url.password is not None
        if path is not None:
            if in_url:
                raise ValueError(
                    "proxy credentials are given twice, in the user:password part of "
                    "proxy_url and in proxy_credentials_file: keep one"
                )
            user, password = _read_proxy_credentials(path)
        elif in_url:
            user, password = unquote(url.username or ""), unquote(url.password or "")
        else:
            return self
        path_part = (url.path or "/").lstrip("/") or None
        bare = AnyHttpUrl.build(
            scheme=url.scheme, host=url.host or "", port=url.port, path=path_part, query=url.query
        )
        object.__setattr__(self, "proxy_url", bare)
        self._proxy_credentials = (user, SecretStr(password))
        return self

    @model_validator(mode="after")
    def _load_secret_file(self) -> SourceSettings:
        if self.accesskey_file is not None:
            try:
                secret = self.accesskey_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"accesskey_file {str(self.accesskey_file)!r} cannot be read ({exc.strerror})"
                ) from exc
            object.__setattr__(self, "accesskey", SecretStr(secret))
        if not self.appid:
            raise ValueError("appid is required: set source.appid or CDR_SOURCE__APPID")
        if not self.accesskey.get_secret_value():
            raise ValueError(
                "accesskey is required: set source.accesskey, CDR_SOURCE__ACCESSKEY "
                "or source.accesskey_file"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def proxy_credentials(self) -> tuple[str, SecretStr] | None:
        """The user and password for `proxy_url`, when it needs them."""
        return self._proxy_credentials


def _read_proxy_credentials(path: Path) -> tuple[str, str]:
    """`user:password` from the file, read like `accesskey_file`; the content is never quoted."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(
            f"proxy_credentials_file {str(path)!r} cannot be read ({exc.strerror})"
        ) from exc
    user, colon, password = text.partition(":")
    if not (colon and user and password) or "\n" in text:
        raise ValueError(f"proxy_credentials_file {str(path)!r} must hold one line user:password")
    return user, password


class PollSettings(_Section):
    """How often and how hard the connector asks the vendor for new records."""

    interval_seconds: Annotated[float, Field(gt=0, le=HOUR)] = Field(
        default=5.0, description="sleep between cycles once the backlog is drained"
    )
    # New records carry their dial time, and a long call is written back only when it ends,
    # so the syncflag=1 window must reach back further than the longest call.
    lookback_seconds: Annotated[float, Field(gt=0, le=30 * DAY)] = Field(
        default=DAY,
        description="the dial-time window of `syncflag=1` reads, and how long committed ids "
        "are remembered",
    )
    page_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=1000, description="records per page"
    )
    concurrency: Annotated[int, Field(ge=1, le=64)] = Field(
        default=4, description="API requests in flight"
    )
    # Records whose dial time falls in the last `sweep_window_seconds` are listed with
    # syncflag=2 at start-up, after a failed live request, and every
    # `sweep_interval_seconds`, and any id not yet committed is published: this recovers
    # records fetched before a crash or lost with a failed answer. A sweep lists the whole
    # window (millions of records on a busy account), so the periodic one is rare.
    sweep_window_seconds: Annotated[float, Field(gt=0, le=30 * DAY)] = Field(
        default=6 * HOUR,
        description="the dial-time window of recovery sweeps (`syncflag=2`): at start-up, after "
        "a failed live request, and periodically; at most `poll.lookback_seconds`",
    )
    sweep_interval_seconds: Annotated[float, Field(gt=0, le=7 * DAY)] = Field(
        default=1800.0, description="time between periodic recovery sweeps"
    )
    # Every `audit_interval_seconds` each closed hour of dial time (older than
    # `audit_settle_seconds`, inside the lookback) is counted by the vendor (syncflag=3) and
    # compared with what was committed; a shortfall is listed and published.
    audit_interval_seconds: PositiveSeconds = Field(
        default=900.0, description="time between audits of closed hours (see below)"
    )
    audit_settle_seconds: Annotated[float, Field(gt=0, le=7 * DAY)] = Field(
        default=HOUR, description="an hour of dial time is audited once it is this long past"
    )
    retry_initial_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=0.5, description="first API retry delay: exponential backoff with full jitter"
    )
    retry_max_seconds: Annotated[float, Field(gt=0, le=HOUR)] = Field(
        default=30.0, description="longest API retry delay"
    )
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=8, description="attempts of one API request before the cycle fails"
    )
    # A listing (sweep, audit, backfill) ends at its first short or empty page, and after this
    # many pages whatever totalitems claims: 100 million records at 1,000 a page.
    max_listing_pages: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=100_000,
        description="a sweep, audit or backfill listing ends at its first short or empty page, "
        "and after this many pages whatever `totalitems` says",
    )

    @model_validator(mode="after")
    def _sweep_inside_lookback(self) -> PollSettings:
        if self.sweep_window_seconds > self.lookback_seconds:
            raise ValueError(
                "sweep_window_seconds must not exceed lookback_seconds: the committed-id "
                "state only covers the lookback horizon"
            )
        return self


class BrakeSettings(_Section):
    """When to stop live syncflag=1 reads: each one marks more records read at the vendor, and
    if they cannot be published (a vendor format change, a bug) they are better left there.

    Engaged when more than `dead_letter_ratio` of the last `window_bills` bills were
    dead-lettered, or when `max_commit_failures` transactions in a row failed unexpectedly.
    Sweeps and audits go on (they mark nothing), fetched batches are still committed, /readyz
    says why. Only a restart releases it; `enabled = false` runs without it.
    """

    enabled: bool = Field(
        default=True,
        description='stop live `syncflag=1` reads on the conditions below (see "Bad data from '
        'the vendor")',
    )
    window_bills: Annotated[int, Field(ge=10, le=1_000_000)] = Field(
        default=1000, description="how many of the last bills the dead-letter share is taken over"
    )
    dead_letter_ratio: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.5,
        description="the brake engages when more than this share of them was dead-lettered",
    )
    max_commit_failures: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=5, description="or when this many transactions in a row failed unexpectedly"
    )


class KafkaSettings(_Section):
    """Where records go and how the transactional producer behaves."""

    bootstrap_servers: str = Field(default="127.0.0.1:19092", description="the brokers")
    topic: str = Field(default="cdr.calls", description="the records' topic")
    dead_letter_topic: str = Field(
        default="cdr.calls.dlq", description="bills that cannot be published, with the reason"
    )
    state_topic: str = Field(
        default="cdr-connector.state", description="the compacted topic of committed ids"
    )
    transactional_id: str | None = Field(
        default=None,
        description="fences a second instance of the same source; unset: "
        "`cdr-connector-<source.name>`",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="zstd", description="the producer's compression"
    )
    key_fallback_field: Literal["displaynumber", "destnumber", "userid", "id"] = Field(
        default="displaynumber", description="the record key's field when `extnumber` is empty"
    )
    create_topics: bool = Field(
        default=False,
        description="create missing topics at start-up, with the three settings below",
    )
    partitions: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=6, description="partitions of a created topic"
    )
    replication_factor: Annotated[int, Field(ge=1, le=32)] = Field(
        default=3, description="replication factor of a created topic"
    )
    # -1 keeps records forever; otherwise at most ten years.
    retention_ms: Annotated[int, Field(ge=-1, le=int(3650 * DAY * 1000))] = Field(
        default=int(7 * DAY * 1000),
        description="retention of created data topics; -1 keeps forever",
    )
    # librdkafka's floor is 1 s; brokers refuse more than transaction.max.timeout.ms (15 min
    # by default).
    transaction_timeout_seconds: Annotated[float, Field(ge=1, le=900)] = Field(
        default=60.0,
        description="the transaction's timeout, at most the broker's "
        "`transaction.max.timeout.ms` (15 minutes by default)",
    )
    # librdkafka's default queue may hold 1 GiB; a bounded queue makes back-pressure visible.
    queue_max_messages: Annotated[int, Field(ge=1000, le=10_000_000)] = Field(
        default=100_000, description="messages the producer's queue holds before production waits"
    )
    queue_max_kbytes: Annotated[int, Field(ge=1024, le=4 * 1024 * 1024)] = Field(
        default=256 * 1024,
        description="KiB the producer's queue holds before production waits; keep it well "
        "under the pod's memory limit",
    )
    operation_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=30.0, description="the bound on admin and metadata requests"
    )
    # A record whose Avro value is larger goes to the dead-letter topic: the broker (1 MiB per
    # batch by default) and librdkafka (message.max.bytes, 1,000,000) would refuse it, and a
    # refused message fails its transaction every time it is produced again.
    max_value_bytes: Annotated[int, Field(ge=1024, le=100 * 1024 * 1024)] = Field(
        default=900_000,
        description="larger records are dead-lettered (Kafka would refuse them); raise it only "
        "with the topic's `max.message.bytes` and librdkafka's `message.max.bytes`",
    )
    # Passed to librdkafka unchanged: security.protocol, sasl.*, ssl.* and the like.
    client_config: dict[str, str] = Field(
        default_factory=dict,
        description="passed to librdkafka: `security.protocol`, `sasl.*`, `ssl.*`, ...; checked "
        "by librdkafka at start-up (clients built without contacting a broker), so an unknown "
        "property, a bad value, `SASL_SSL` without `sasl.mechanism` or an unreadable "
        "certificate stops start-up with exit status 2",
    )

    @field_validator("client_config")
    @classmethod
    def _no_overrides_of_guarantees(cls, value: dict[str, str]) -> dict[str, str]:
        owned = {"enable.idempotence", "acks", "transactional.id", "isolation.level"}
        clash = owned & value.keys()
        if clash:
            raise ValueError(
                f"{', '.join(sorted(clash))} cannot be overridden: exactly-once depends on them"
            )
        # confluent-kafka takes `logger` as a Python logger; a text there is accepted when the
        # client is made and fails at the first log line, deep in a delivery poll.
        if "logger" in value:
            raise ValueError(
                "logger cannot be set: librdkafka's log lines go to the connector's log"
            )
        return value


class AvroSettings(_Section):
    """Schema Registry framing when a URL is set; Avro single-object encoding otherwise."""

    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent framing through this Schema Registry when set; Avro "
        "single-object encoding otherwise",
    )
    schema_registry_config: dict[str, str] = Field(
        default_factory=dict,
        description="passed to the Schema Registry client: `basic.auth.user.info`, `ssl.*`, ...",
    )
    # Named as confluent-kafka's serializer names them.
    auto_register_schemas: bool = Field(
        default=True,
        description="register the schema under `<topic>-value` at start-up; `false` only looks "
        'it up, where producers may read subjects but not write them (see "Schema Registry")',
    )
    use_latest_version: bool = Field(
        default=False,
        description="with `auto_register_schemas = false`: take the subject's latest version, "
        "which must be this schema, instead of looking the schema up among every version",
    )

    @model_validator(mode="after")
    def _lookup_needs_registration_off(self) -> AvroSettings:
        if self.use_latest_version and self.auto_register_schemas:
            raise ValueError(
                "use_latest_version needs auto_register_schemas = false: the connector either "
                "registers its schema or uses the subject's latest version, not both"
            )
        return self


class HttpSettings(_Section):
    """The /metrics, /livez and /readyz listener."""

    host: str = Field(
        default="127.0.0.1",
        description="address of `/metrics`, `/livez`, `/readyz`: an IP address (`0.0.0.0` or "
        "`::` for every interface) or a host name",
    )
    port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=9464, description="port of `/metrics`, `/livez`, `/readyz`"
    )
    # Probes and scrapes need a handful. Beyond this many, a new connection closes the oldest
    # one that has not sent its request yet, or is closed at once. Keep it, plus about 300 for
    # connections accepted only to be closed, below the process's file descriptor limit
    # (`ulimit -n`), which Kafka and the vendor API share.
    max_connections: Annotated[int, Field(ge=1, le=65_536)] = Field(
        default=100, description='the listener\'s bound on open connections (see "Endpoints")'
    )
    # A connection is closed when its request headers are not complete this long after it
    # opened (or, kept alive, after its previous answer).
    header_timeout_seconds: PositiveSeconds = Field(
        default=5.0, description="a connection whose request headers take longer is closed"
    )

    @field_validator("host")
    @classmethod
    def _address_or_host_name(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            labels = value.removesuffix(".").split(".")
            # An all-digit last label is a mistyped IPv4 address (256.1.1.1), not a name.
            if (
                len(value) > 253
                or not all(_HOST_LABEL.match(label) for label in labels)
                or labels[-1].isdigit()
            ):
                raise ValueError(
                    "must be an IP address or a host name: 127.0.0.1 for this machine only, "
                    "0.0.0.0 or :: for every interface"
                ) from None
        return value


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="the lowest level logged"
    )
    format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="log lines as JSON or text; auto: text on a terminal, JSON otherwise",
    )


class SourceEntry(SourceSettings):
    """One item of `[[sources]]`: a vendor account, and how its polling differs from `[poll]`."""

    poll: dict[str, Any] = Field(
        default_factory=dict,
        description="this source's overrides of `[poll]` (any of its keys)",
    )


class FleetSettings(_Section):
    """Replicas sharing the sources through a Kafka consumer group (off: one replica)."""

    enabled: bool = Field(
        default=False,
        description="share the sources among replicas through a Kafka consumer group; off, "
        "this process runs every source (one replica only)",
    )
    group_id: str = Field(
        default="cdr-connector",
        description="the consumer group of the replicas that share the sources",
    )
    coordination_topic: str = Field(
        default="cdr-connector.sources",
        description="its partitions stand for the sources (one each, by name order)",
    )
    session_timeout_seconds: Annotated[float, Field(ge=6, le=300)] = Field(
        default=10.0,
        description="a replica not heard from for this long loses its sources to the others "
        "(brokers refuse less than their group.min.session.timeout.ms, 6 s by default)",
    )


class Settings(BaseSettings):
    """Everything cdr-connector needs to run its sources: `[source]` for one, `[[sources]]` for
    several. `per_source()` gives the settings each source runs with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    source: SourceSettings = Field(
        description="the one vendor account (given `[[sources]]`: the first of them)"
    )
    sources: list[SourceEntry] = Field(
        default_factory=list,
        description="several vendor accounts instead of `[source]`: each item takes the keys "
        "of `[source]` and an optional `poll` table of overrides of `[poll]`",
    )
    fleet: FleetSettings = FleetSettings()
    poll: PollSettings = PollSettings()
    brake: BrakeSettings = BrakeSettings()
    kafka: KafkaSettings = KafkaSettings()
    avro: AvroSettings = AvroSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()
    shutdown_timeout_seconds: Annotated[float, Field(gt=0, le=HOUR)] = Field(
        default=30.0, description="bound on a graceful stop"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _config_file.get() or os.environ.get(CONFIG_PATH_ENV)
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _one_form_of_sources(cls, data: Any) -> Any:
        """`[source]` is the one-source shorthand of `[[sources]]`; not both."""
        if not isinstance(data, dict) or not data.get("sources"):
            return data
        if data.get("source"):
            raise ValueError("give either [source] or [[sources]], not both")
        first = data["sources"][0]
        if isinstance(first, dict):
            data = data | {"source": {k: v for k, v in first.items() if k != "poll"}}
        return data

    @model_validator(mode="after")
    def _sources_apart(self) -> Settings:
        names = [entry.name for entry in self.sources]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"sources.name must be unique; repeated: {', '.join(repeated)}")
        if len(self.sources) > 1 and self.kafka.transactional_id:
            raise ValueError(
                "kafka.transactional_id cannot be set with several sources: each source "
                "has its own, cdr-connector-<name>"
            )
        for index, entry in enumerate(self.sources):
            try:
                PollSettings.model_validate(self.poll.model_dump() | entry.poll)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in exc.errors(include_input=False, include_url=False)
                )
                raise ValueError(f"sources[{index}].poll ({entry.name}): {problems}") from None
        return self

    @property
    def transactional_id(self) -> str:
        return self.kafka.transactional_id or f"cdr-connector-{self.source.name}"

    def per_source(self) -> list[Settings]:
        """The settings of each source, as if it were the only one: its `[source]`, and
        `[poll]` with its overrides."""
        if not self.sources:
            return [self]
        return [self._only(entry) for entry in self.sources]

    def _only(self, entry: SourceEntry) -> Settings:
        # The entry is a SourceSettings already (its secrets read, its proxy credentials
        # taken apart): it is used as it is, not validated again.
        poll = PollSettings.model_validate(self.poll.model_dump() | entry.poll)
        return self.model_copy(update={"source": entry, "poll": poll, "sources": []})


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings, or raise ConfigError with one line per problem."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {str(config_file)!r} does not exist or is not a file")
    path = os.environ.get(CONFIG_PATH_ENV)
    if config_file is None and path and not Path(path).is_file():
        raise ConfigError(f"{CONFIG_PATH_ENV}={path!r} does not exist or is not a file")
    token = _config_file.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:  # a variable that should hold JSON does not
        raise ConfigError(describe_environment_error(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"config file cannot be read: {exc}") from None
    finally:
        _config_file.reset(token)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: the key, what is wrong with its value, and how to fix it.

    Input values are never echoed, since a misplaced secret would end up in the log.
    """
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or "settings"
        env = ENV_PREFIX + "__".join(str(part).upper() for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a known setting; check its spelling and section"
        elif error["type"] == "missing":
            message = f"is required; set it in the config file or as {env}"
        elif error["type"] in _RANGE_ERRORS:
            message = _allowed_range(error["loc"]) or message
        lines.append(f"{key}: {message}")
    return "invalid settings: " + "; ".join(lines)


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _allowed_range(path: Sequence[int | str]) -> str | None:
    """'must be more than 0 and at most 3600': both bounds of the number at `path`."""
    field = _setting_at(path)
    if field is None:
        return None
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    bounds = [
        f"{word} {_plain(getattr(item, name))}"
        for name, word in words.items()
        for item in field.metadata
        if getattr(item, name, None) is not None
    ]
    return "must be " + " and ".join(bounds) if bounds else None


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _setting_at(path: Sequence[int | str]) -> FieldInfo | None:
    """The field of the setting at `path` (("poll", "concurrency")), or None if there is none."""
    model: Any = Settings
    field: FieldInfo | None = None
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        # Through Any: where pydantic is absent (the writers' isolated mypyc build checks
        # this module without it) `model` is a bare `type`.
        field = cast(Any, model).model_fields.get(str(part))
        if field is None:
            return None
        model = field.annotation
    return field


def describe_environment_error(exc: SettingsError) -> str:
    """Name the CDR_ variables that should hold JSON (a section, a list, a map) but do not.

    pydantic-settings names only the top-level section; the variable may be nested. Their
    values are never echoed, only where JSON parsing stopped.
    """
    problems = []
    for name, value in sorted(os.environ.items()):
        if not name.upper().startswith(ENV_PREFIX) or not _takes_json(name):
            continue
        try:
            json.loads(value)
        except json.JSONDecodeError as error:
            problems.append(f"{name} is not valid JSON ({error.msg} at character {error.pos})")
    if not problems:
        return f"invalid settings: a {ENV_PREFIX} variable cannot be read: {exc}"
    return (
        "invalid settings: "
        + "; ".join(problems)
        + ": a section, list or map takes JSON ('{\"key\": 1}', '[\"a\"]'), or set one key "
        + f"per variable ({ENV_PREFIX}SECTION__KEY)"
    )


def _takes_json(variable: str) -> bool:
    """Whether pydantic-settings parses this variable as JSON: a section, list or map."""
    path = variable[len(ENV_PREFIX) :].lower().split("__")
    field = _setting_at(path)
    if field is None:
        return False
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return typing.get_origin(annotation) in (dict, list, tuple, set, frozenset)
