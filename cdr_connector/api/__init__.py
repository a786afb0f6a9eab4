"""The vendor's call-record API: the `VendorApi` contract, its HTTP client, and the values
that cross it."""

from cdr_connector.api.client import (
    GET_BILL,
    GET_RECORD_FILE,
    LOGIN,
    VendorApi,
    VendorApiClient,
)
from cdr_connector.api.models import PBX_TIME_FORMAT, BillPage, BillQuery, SyncFlag
from cdr_connector.api.transport import default_session_factory, tls_option

__all__ = [
    "GET_BILL",
    "GET_RECORD_FILE",
    "LOGIN",
    "PBX_TIME_FORMAT",
    "BillPage",
    "BillQuery",
    "SyncFlag",
    "VendorApi",
    "VendorApiClient",
    "default_session_factory",
    "tls_option",
]
