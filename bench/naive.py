"""The client people write by hand, as the vendor's public example code reads GetBill:

    python -m bench.naive --url URL --bootstrap HOST:PORT --topic T [--max-seconds S]

One page at a time (`syncflag=1`, 1000 per page) over one keep-alive HTTP connection with the
standard library, `json.loads` of the answer, every bill `json.dumps`-ed as the Kafka value
(keyed by extension), a plain producer (no idempotence, no transactions: librdkafka's
defaults), `poll(0)` after each page and one `flush()` at the end. No checkpoint: a crash
between fetching and flushing loses what the server already marked as delivered.

It stops when a page comes back empty or after `--max-seconds` of fetching, and prints one
JSON line: records, seconds, records/s, CPU microseconds per record and peak RSS.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import sys
import time
import urllib.parse
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import Producer

from bench.common import ACCESSKEY, APPID


def _post(connection: http.client.HTTPConnection, path: str, form: dict[str, str]) -> Any:
    body = urllib.parse.urlencode(form)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    connection.request("POST", path, body, headers)
    return json.loads(connection.getresponse().read())


def run(url: str, bootstrap: str, topic: str, max_seconds: float) -> dict[str, Any]:
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port)
    path = parsed.path or "/"
    login = {"service": "App.Sip_Auth.Login", "appid": APPID, "accesskey": ACCESSKEY}
    token = _post(connection, path, login)["data"]["result"]["token"]
    producer = Producer({"bootstrap.servers": bootstrap})
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    form = {
        "service": "App.Sip_Cdr.GetBill",
        "token": token,
        "starttime": (now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"),
        "endtime": (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        "syncflag": "1",
        "direction": "3",
        "callmethod": "0",
        "currentpage": "1",
        "itemsperpage": "1000",
    }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    began = time.perf_counter()
    records = 0
    while time.perf_counter() - began < max_seconds:
        bills = _post(connection, path, form)["data"]["result"]["bills"]
        if not bills:
            break
        for bill in bills:
            value = json.dumps(bill, ensure_ascii=False).encode("utf-8")
            key = str(bill.get("extnumber") or bill.get("displaynumber") or "").encode()
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
        records += len(bills)
    producer.flush(120)
    elapsed = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu
    return {
        "records": records,
        "seconds": elapsed,
        "records_per_s": records / elapsed,
        "cpu_us_per_record": cpu / max(1, records) * 1e6,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args()
    result = run(args.url, args.bootstrap, args.topic, args.max_seconds)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
