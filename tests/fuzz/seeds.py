"""The hand-made seeds of the fuzz corpus: valid inputs of each parser, built with the
project's own encoders, so the fuzzer starts from the interesting shapes.

``python -m tests.fuzz --seed-corpus`` writes them (as ``seed-<n>``) next to what the
fuzzer found and kept; the corpus lives in the repository.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from fleetpool.pg import messages as pm
from fleetpool.pg.auth import ScramClient, md5_password
from fleetpool.pg.codec import CancelRequest, SSLRequest, encode_message, encode_startup

ROOT = Path(__file__).resolve().parents[2]


def _pg_client() -> list[bytes]:
    startup = encode_startup({"user": "app", "database": "db", "application_name": "x"})
    extended = (
        pm.build_parse(b"s1", b"select $1", b"\x00\x01\x00\x00\x00\x17")
        + encode_message(b"B", b"\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x011\x00\x00")
        + encode_message(b"D", b"S\x00")
        + encode_message(b"E", b"\x00\x00\x00\x00\x00")
        + encode_message(b"S")
    )
    return [
        b"\x03" + startup + pm.password_message(b"secret") + pm.query("select 1"),
        b"\x00" + SSLRequest().encode() + startup,
        b"\x06" + CancelRequest(1, 2).encode(),
        b"\x02"
        + startup
        + pm.sasl_initial_response("SCRAM-SHA-256", ScramClient("pw").first())
        + pm.sasl_response(b"c=biws,r=abc,p=xyz"),
        b"\x04" + startup + extended + encode_message(b"C", b"Ss1\x00") + encode_message(b"X"),
    ]


def _pg_relay() -> list[bytes]:
    return [
        b"\x00" + pm.query("SET search_path = a; select 1"),
        b"\x03" + pm.query("BEGIN") + pm.query("LISTEN ch") + pm.query("COMMIT"),
        b"\x01"
        + pm.build_parse(b"s1", b"select 1")
        + encode_message(b"B", b"\x00s1\x00\x00\x00\x00\x00\x00\x00")
        + encode_message(b"E", b"\x00\x00\x00\x00\x00")
        + encode_message(b"S")
        + pm.query("DEALLOCATE s1"),
        b"\x05" + pm.query("CREATE TEMP TABLE t (a int)") + pm.query("DISCARD ALL"),
        b"\x02" + encode_message(b"d", b"1\t2\n") + encode_message(b"c") + encode_message(b"H"),
    ]


def _pg_server() -> list[bytes]:
    row = (
        pm.row_description(["a", "b"])
        + pm.data_row(["1", None])
        + pm.command_complete("SELECT 1")
        + pm.ready_for_query()
    )
    return [
        b"\x00"
        + pm.auth_ok()
        + pm.parameter_status("server_version", "16.0")
        + pm.backend_key_data(7, 9)
        + pm.ready_for_query(),
        b"\x03" + row,
        b"\x01" + pm.error_response("42P01", "no such table", hint="h") + pm.ready_for_query(b"E"),
        b"\x02" + pm.build_notification(5, "ch", "payload") + pm.notice_response("n"),
        b"\x04" + pm.auth_sasl(["SCRAM-SHA-256"]) + pm.auth_request(pm.AUTH_MD5, b"salt"),
    ]


def _pg_login() -> list[bytes]:
    client = ScramClient("pw", nonce="clientnonce")
    return [
        b"\x00" + pm.sasl_initial_response("SCRAM-SHA-256", client.first()),
        b"\x01" + pm.password_message(md5_password("app", "pw", b"salt")),
        b"\x02" + pm.password_message(b"pw"),
        b"\x03"
        + pm.sasl_initial_response("SCRAM-SHA-256", client.first())
        + pm.sasl_response(b"c=biws,r=clientnonceXYZ,p=cHJvb2Y="),
        b"\x00"
        + pm.auth_sasl(["SCRAM-SHA-256"])
        + pm.auth_request(pm.AUTH_SASL_CONTINUE, b"r=abc,s=c2FsdA==,i=4096"),
        b"\x01" + pm.auth_request(pm.AUTH_CLEARTEXT) + pm.auth_ok() + pm.ready_for_query(),
    ]


SQL = [
    "select 1",
    "SET LOCAL statement_timeout = '5s'",
    'set search_path to a, "B"; reset all',
    "WITH x AS (SELECT 1) SELECT * INTO TEMP t FROM x",
    "select set_config('a.b', 'c', false)",
    "/* c */ PREPARE p AS select $1; DEALLOCATE p",
    "DO $$ BEGIN PERFORM 1; END $$",
    "CREATE TEMPORARY TABLE t (a int) ON COMMIT DROP",
    "DECLARE c CURSOR WITH HOLD FOR select 1",
    "select pg_advisory_lock(1); LISTEN x; LOAD 'auto_explain'",
]

MYSQL_SQL = [
    "SET NAMES utf8mb4",
    "SET @a := 1, SESSION sql_mode = 'ANSI'",
    "select get_lock('x', 1) /*! , 2 */ -- c",
    "USE db; CREATE TEMPORARY TABLE t (a int)",
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "select 'it''s' `q` \"d\" # c",
]


def _mysql_packets() -> list[bytes]:
    from fleetpool.mysql.codec import encode_packet
    from tests.unit.mysql.test_fuzz import client_packets, response_packets, valid_payloads

    out = [b"\x02" + encode_packet(p, i % 256) for i, p in enumerate(valid_payloads())]
    out += [b"\x05" + p for p in client_packets()]
    out += [b"\x00" + b"".join(encode_packet(p, i + 1) for i, p in enumerate(response_packets()))]
    return out


def _mysql_tracker() -> list[bytes]:
    from fleetpool.mysql.codec import encode_packets
    from tests.unit.mysql.test_fuzz import response_packets

    packets = response_packets()
    out = []
    for selector in range(8):
        data, _ = encode_packets(packets[selector : selector + 6], 1)
        out.append(bytes([selector]) + b"\x03" + data)
    return out


def _mysql_login() -> list[bytes]:
    from fleetpool.mysql import constants as c
    from fleetpool.mysql import messages as mm
    from fleetpool.mysql.codec import encode_packet
    from tests.unit.mysql.test_fuzz import client_packets

    caps = c.CLIENT_PROTOCOL_41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_PLUGIN_AUTH
    hello = mm.HandshakeV10("8.0.36", 1, b"n" * 20, caps, auth_plugin="caching_sha2_password")
    return [
        b"\x06" + encode_packet(hello.build(), 0) + encode_packet(b"\x01\x03", 2),
        b"\x03" + encode_packet(hello.build(), 0) + encode_packet(mm.OkPacket().build(caps), 2),
        *(b"\x04" + p for p in client_packets()),
    ]


def _data_api() -> list[bytes]:
    from fleetpool.dataapi import sigv4

    body = json.dumps(
        {
            "resourceArn": "arn:aws:rds:us-east-1:1:cluster:c",
            "secretArn": "arn:aws:secretsmanager:us-east-1:1:secret:s",
            "sql": "select :a, :b::text, :c",
            "parameters": [
                {"name": "a", "value": {"longValue": 1}},
                {"name": "b", "value": {"stringValue": "x"}, "typeHint": "DATE"},
                {"name": "c", "value": {"arrayValue": {"doubleValues": [1.5]}}},
            ],
            "resultSetOptions": {"decimalReturnType": "STRING"},
            "formatRecordsAs": "JSON",
        }
    ).encode()
    headers = {"host": "127.0.0.1:1", "content-type": "application/json"}
    signed = sigv4.sign(
        "POST",
        "/Execute",
        headers,
        body,
        key_id="AKID",
        secret="secret",
        region="us-east-1",
        now=time.time(),
    )
    auth, stamp = signed["Authorization"].encode(), signed["X-Amz-Date"].encode()
    return [
        auth + b"\x00" + stamp + b"\x00Execute\x00" + body,
        b"\x00\x00BeginTransaction\x00{}",
        b"AWS4-HMAC-SHA256 Credential=a/b\x0020200101T000000Z\x00fp1.YQ.1.x\x00[]",
    ]


def _urls() -> list[bytes]:
    return [
        s.encode()
        for s in (
            "postgresql://app:pw@db.example:5432/orders?sslmode=require&application_name=x",
            "mysql://root@127.0.0.1/shop?charset=utf8mb4",
            "postgresql://u@h1:5432,h2:5433/db",
            "postgres://[::1]:6432/db",
            "redis://:pw@127.0.0.1:6379/0?timeout=2&on_unavailable=fail_closed",
            "rediss://cache.example:6380/1",
            "memory://",
            "sqlite:///tmp/budget.db?timeout=1",
            "dynamodb://fleetpool-budgets?region=eu-west-1&create=false",
            "127.0.0.1:6432",
        )
    ]


def _tokens() -> list[bytes]:
    from fleetpool.tokens import make_token

    return [
        make_token("k1", "app", 1.0e9).encode() + b"\x00app",
        b"fp1.YXBw.99999999999.sig\x00app",
        b"fp1...\x00",
    ]


def seeds() -> dict[str, list[bytes]]:
    scenario = (ROOT / "src/fleetpool/fleet/scenarios/example.toml").read_bytes()
    proxy = (ROOT / "src/fleetpool/proxy/example.toml").read_bytes()
    data_api = (ROOT / "src/fleetpool/dataapi/example.toml").read_bytes()
    return {
        "pg_frontend": _pg_client(),
        "pg_relay": _pg_relay(),
        "pg_backend": _pg_server(),
        "pg_login": _pg_login(),
        "pg_sql": [s.encode() for s in SQL],
        "mysql_packets": _mysql_packets(),
        "mysql_tracker": _mysql_tracker(),
        "mysql_login": _mysql_login(),
        "mysql_sql": [s.encode() for s in MYSQL_SQL],
        "data_api_request": _data_api(),
        "proxy_config": [
            proxy,
            b'upstream = "postgresql://u:p@127.0.0.1/db"\nlisten = "127.0.0.1:0"\n'
            b'server_tls = "verify-full"\n[databases]\nx = { pool_size = 2 }\n',
        ],
        "data_api_config": [data_api],
        "scenario_file": [scenario],
        "urls": _urls(),
        "tokens": _tokens(),
    }


def write_seeds(corpus: Path) -> dict[str, int]:
    counts = {}
    for name, items in seeds().items():
        folder = corpus / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for data in items:
            digest = hashlib.sha1(data).hexdigest()[:12]
            (folder / f"seed-{digest}").write_bytes(data)
        counts[name] = len(items)
    return counts
