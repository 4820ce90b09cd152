"""MySQL relay hot path: what fleetpool's tracker costs per response, beside peers.

Strategy: the proxy's per-command protocol work on MySQL is (1) the session pre-filter
on the COM_QUERY text and (2) the ResponseTracker finding where the response ends.
Both are measured on the bytes of a point select's response (column count, one
column definition, one row, terminator), in the layouts with and without
CLIENT_DEPRECATE_EOF, and on a 100-row response. Beside them, from the same run:

* ``scan_packets`` on the same bytes: framing only, the floor of any relay;
* PyMySQL decoding the same packets (its MysqlPacket / FieldDescriptorPacket /
  row reading, no socket): what the client library spends on that response;
* fleetpool's PostgreSQL ``scan_frames`` on a PostgreSQL point select's response
  (RowDescription, DataRow, CommandComplete, ReadyForQuery): the other plug-in.

Rounds are interleaved and the median per-response time of each is printed with
its ratio to the tracker; nothing is asserted. Pure CPU, no server: figures are
still provisional on a shared, loaded machine.

Usage: .venv/bin/python -m benchmarks.mysql_tracker [--rounds 7] [-n 20000]
"""

from __future__ import annotations

import argparse
import statistics
import struct
import time
from collections.abc import Callable

from fleetpool.mysql import constants as c
from fleetpool.mysql import messages as m
from fleetpool.mysql.codec import encode_packets, scan_packets
from fleetpool.mysql.sql import might_affect_session
from fleetpool.mysql.tracker import ResponseTracker
from fleetpool.pg.codec import scan_frames

MODERN = (
    c.CLIENT_PROTOCOL_41 | c.CLIENT_SESSION_TRACK | c.CLIENT_DEPRECATE_EOF | c.CLIENT_PLUGIN_AUTH
)
LEGACY = MODERN & ~c.CLIENT_DEPRECATE_EOF
QUERY = b"\x03SELECT c FROM sbtest1 WHERE id=4242"


def response(caps: int, rows: int) -> bytes:
    column = m.ColumnDefinition(
        "c", c.MYSQL_TYPE_STRING, c.CHARSET_UTF8MB4_GENERAL_CI, 480, 0, 0, "sbtest", "sbtest1",
        "sbtest1", "c",
    )  # fmt: skip
    value = b"68487932199-96439406143-93774651418-41631865787-96406072701-"
    payloads = m.build_result_set([column], [[value]] * rows, caps, c.SERVER_STATUS_AUTOCOMMIT)
    return encode_packets(payloads, 1)[0]


def pg_response() -> bytes:
    def msg(t: bytes, body: bytes) -> bytes:
        return t + struct.pack("!i", len(body) + 4) + body

    field = b"c\x00" + struct.pack("!ihihih", 16384, 3, 1042, 120, -1, 0)
    value = b"68487932199-96439406143-93774651418-41631865787-96406072701-"
    return (
        msg(b"T", struct.pack("!h", 1) + field)
        + msg(b"D", struct.pack("!hi", 1, len(value)) + value)
        + msg(b"C", b"SELECT 1\x00")
        + msg(b"Z", b"I")
    )


def tracker_case(caps: int, data: bytes) -> Callable[[int], None]:
    tracker = ResponseTracker(caps)

    def run(n: int) -> None:
        start, feed = tracker.start, tracker.feed
        for _ in range(n):
            start(3, 1)
            if feed(data, 0) != len(data) or not tracker.done:
                raise AssertionError("tracker did not find the end of the response")

    return run


def prefilter_case(n: int) -> None:
    end = len(QUERY)
    for _ in range(n):
        if might_affect_session(QUERY, 1, end):
            raise AssertionError("a point select must be clean")


def scan_case(data: bytes) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            scan_packets(data, 0)

    return run


def pg_case(data: bytes) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            scan_frames(data, 0, 1 << 26)

    return run


def pymysql_case(caps: int, data: bytes) -> Callable[[int], None]:
    from pymysql.protocol import FieldDescriptorPacket, MysqlPacket

    offsets, _ = scan_packets(data, 0)
    payloads = [data[o + 4 : o + 4 + int.from_bytes(data[o : o + 3], "little")] for o in offsets]

    def run(n: int) -> None:
        for _ in range(n):
            first = MysqlPacket(payloads[0], "utf8")
            count = first.read_length_encoded_integer()
            i = 1
            for _ in range(count):
                FieldDescriptorPacket(payloads[i], "utf8")
                i += 1
            if not caps & c.CLIENT_DEPRECATE_EOF:
                MysqlPacket(payloads[i], "utf8").is_eof_packet()
                i += 1
            while True:
                packet = MysqlPacket(payloads[i], "utf8")
                i += 1
                if packet.is_eof_packet():
                    break
                [packet.read_length_coded_string() for _ in range(count)]

    return run


def measure(run: Callable[[int], None], n: int) -> float:
    t0 = time.perf_counter()
    run(n)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("-n", type=int, default=20000, help="responses per round and case")
    args = ap.parse_args()

    point_modern, point_legacy = response(MODERN, 1), response(LEGACY, 1)
    hundred = response(MODERN, 100)
    cases: dict[str, Callable[[int], None]] = {
        "tracker, point select, DEPRECATE_EOF": tracker_case(MODERN, point_modern),
        "tracker, point select, legacy EOF": tracker_case(LEGACY, point_legacy),
        "tracker, 100 rows, DEPRECATE_EOF": tracker_case(MODERN, hundred),
        "session pre-filter (memo hit)": prefilter_case,
        "scan_packets, point select (floor)": scan_case(point_modern),
        "PyMySQL decoding the point select": pymysql_case(MODERN, point_modern),
        "PyMySQL decoding 100 rows": pymysql_case(MODERN, hundred),
        "pg scan_frames, PG point select": pg_case(pg_response()),
    }
    for run in cases.values():  # warm up (and fill the pre-filter's memo)
        run(200)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, run in cases.items():
            samples[name].append(measure(run, args.n))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    base = medians["tracker, point select, DEPRECATE_EOF"]
    print(f"\nMySQL relay hot path, {args.rounds} rounds x {args.n} responses (median us)\n")
    header = f"{'case':<40} {'us/response':>12} {'vs tracker':>11}"
    print(header)
    print("-" * len(header))
    for name, value in medians.items():
        print(f"{name:<40} {value:>12.3f} {value / base:>10.2f}x")
    print(
        f"\npoint select: {len(point_modern)} bytes in 4 packets (DEPRECATE_EOF), "
        f"{len(point_legacy)} bytes in 5 (legacy)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
