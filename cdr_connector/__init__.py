"""cdr-connector: call detail records from a telephony vendor's API into Kafka, exactly once."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cdr-connector")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
