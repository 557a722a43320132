"""The Delta Sharing server against the real `delta-sharing` client, on a free port in a thread."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import delta_sharing
import pandas as pd
import pytest
import requests
from delta_sharing.protocol import Schema, Share
from requests.exceptions import HTTPError

from pipelines.sharing.access_log import ACCESS_LOG
from pipelines.sharing.publish import publish
from pipelines.sharing.signing import FileGrant
from pipelines.sharing.tokens import revoke_tokens
from tests.unit.sharing.conftest import Running, running
from tests.unit.sharing.data import DAY, Builder

pytestmark = pytest.mark.timeout(60)  # the client retries 5xx for ~100 s; fail fast instead
A, B = "fr-orange", "es-movistar"


@pytest.fixture(scope="module")
def server(published, tmp_path_factory) -> Iterator[Running]:
    """Publish fr-orange twice (versions 0 and 1), then serve on a free port."""
    env = published
    b = Builder()
    b.n = 50_000
    b.record(6, "voice", DAY + timedelta(hours=13), duration_s=90, plmn="208-01", cell=None)
    time.sleep(0.05)
    b.append_usage(env.lake)
    publish(env.settings, A)
    with running(env, tmp_path_factory.mktemp("profiles")) as r:
        yield r


def url(profile: str, table: str, share: str = A) -> str:
    return f"{profile}#{share}.telcolake.{table}"


def same(df: pd.DataFrame, expected: pd.DataFrame, key: str) -> None:
    a = df.sort_values(key).reset_index(drop=True)
    b = expected.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_lists_shares_schemas_and_tables(server):
    client = delta_sharing.SharingClient(server.profile(A))
    assert [s.name for s in client.list_shares()] == [A]
    assert [s.name for s in client.list_schemas(Share(A))] == ["telcolake"]
    assert sorted(t.name for t in client.list_tables(Schema("telcolake", A))) == ["roaming_records", "roaming_settlement"]
    assert sorted((t.share, t.name) for t in client.list_all_tables()) == [(A, "roaming_records"), (A, "roaming_settlement")]


def test_reads_equal_the_delta_tables_with_limit_version_and_timestamp(server):
    lake, profile = server.env.lake, server.profile(A)
    records = delta_sharing.load_as_pandas(url(profile, "roaming_records"))
    same(records, lake.read(f"shares/{A}/roaming_records").to_pandas(), "record_id")
    assert len(records) == 16
    settlement = delta_sharing.load_as_pandas(url(profile, "roaming_settlement"))
    same(settlement, lake.read(f"shares/{A}/roaming_settlement").to_pandas(), "visited_plmn")
    assert str(settlement["total_charge"][0]) == "0.3047"  # 0.2717 + 90 s at 0.022/min
    assert len(delta_sharing.load_as_pandas(url(profile, "roaming_records"), limit=3)) == 3
    assert delta_sharing.get_table_version(url(profile, "roaming_records")) == 1
    v0 = delta_sharing.load_as_pandas(url(profile, "roaming_records"), version=0)
    same(v0, lake.read(f"shares/{A}/roaming_records", version=0).to_pandas(), "record_id")
    assert len(v0) == 15
    history = {h["version"]: h["timestamp"] for h in lake.table(f"shares/{A}/roaming_records").history()}
    between = datetime.fromtimestamp((history[0] + history[1]) / 2000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert len(delta_sharing.load_as_pandas(url(profile, "roaming_records"), timestamp=between)) == 15
    with pytest.raises(HTTPError) as exc:
        delta_sharing.load_as_pandas(url(profile, "roaming_records"), version=7)
    assert exc.value.response.status_code == 400


def test_change_data_feed(server):
    changes = delta_sharing.load_table_changes_as_pandas(url(server.profile(A), "roaming_records"), starting_version=1, ending_version=1)
    assert changes.groupby("_change_type").size().to_dict() == {"insert": 1}  # only the new record, not a full rewrite
    assert set(changes["_commit_version"]) == {1} and changes["duration_s"].tolist() == [90]
    settlement = delta_sharing.load_table_changes_as_pandas(url(server.profile(A), "roaming_settlement"), starting_version=1, ending_version=1)
    pre, post = (settlement[settlement["_change_type"] == k].iloc[0] for k in ("update_preimage", "update_postimage"))
    assert len(settlement) == 2 and (pre["count_subscribers"], post["count_subscribers"]) == (5, 6)


def test_a_partner_cannot_see_another_share(server):
    profile = server.profile(A)
    client = delta_sharing.SharingClient(profile)
    for call in (lambda: client.list_schemas(Share(B)), lambda: client.list_tables(Schema("telcolake", B)),
                 lambda: delta_sharing.load_as_pandas(url(profile, "roaming_records", share=B)),
                 lambda: delta_sharing.get_table_version(url(profile, "roaming_records", share=B))):
        with pytest.raises(HTTPError) as exc:
            call()
        assert exc.value.response.status_code == 404
    with pytest.raises(HTTPError) as exc:  # a table the partner does not receive
        delta_sharing.load_as_pandas(url(profile, "location_footfall"))
    assert exc.value.response.status_code == 404


def test_refused_tokens(server):
    r = requests.get(f"{server.endpoint}/shares", timeout=5)
    assert r.status_code == 401 and r.json()["errorCode"] == "UNAUTHENTICATED"
    good = server.profile(A)
    wrong = server.profile(A, token=json.loads(Path(good).read_text())["bearerToken"][:-4] + "abcd")
    expired = server.profile(A, days=1, now=datetime.now(UTC) - timedelta(days=2))
    revoked = server.profile(B)
    assert delta_sharing.SharingClient(revoked).list_shares()[0].name == B
    assert revoke_tokens(server.env.settings, B) >= 1
    for profile in (wrong, expired, revoked):
        with pytest.raises(HTTPError) as exc:
            delta_sharing.SharingClient(profile).list_shares()
        assert exc.value.response.status_code == 401
    with pytest.raises(HTTPError):
        delta_sharing.load_as_pandas(url(expired, "roaming_records"))
    assert [s.name for s in delta_sharing.SharingClient(good).list_shares()] == [A]


def test_file_urls_are_signed_expiring_and_support_head_and_range(server):
    r, lines = server.query(server.profile(A), "roaming_records")
    assert r.status_code == 200 and r.headers["Delta-Table-Version"] == "1"
    file = next(line["file"] for line in lines if "file" in line)
    head = requests.head(file["url"], timeout=5)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == file["size"]
    part = requests.get(file["url"], headers={"Range": "bytes=0-3"}, timeout=5)
    assert part.status_code == 206 and part.content == b"PAR1" and part.headers["Content-Range"] == f"bytes 0-3/{file['size']}"
    assert requests.get(file["url"], timeout=5).content[-4:] == b"PAR1"
    prefix, token, name = file["url"].rsplit("/", 2)
    payload, sig = token.split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    signer = server.app.state.signer
    grant = signer.verify(token)
    other_file = signer.sign(FileGrant(grant.partner, grant.table, "../../es-movistar/roaming_records/" + name, grant.expires)).split(".")[0]
    for bad in (f"{prefix}/{payload}.{flipped}/{name}",                      # changed signature
                f"{prefix}/{other_file}.{sig}/{name}",                       # changed path, old signature
                f"{prefix}/{token}/other-{name}",                            # changed file name
                f"{prefix}/{signer.sign(FileGrant(grant.partner, grant.table, grant.path, int(time.time()) - 1))}/{name}"):  # expired
        assert requests.get(bad, timeout=5).status_code == 403, bad
    traversal = signer.sign(FileGrant(grant.partner, grant.table, "../../es-movistar/roaming_records/" + name, grant.expires))
    assert requests.get(f"{prefix}/{traversal}/{name}", timeout=5).status_code == 403


def test_path_traversal_in_names_is_refused(server):
    token = json.loads(Path(server.profile(A)).read_text())["bearerToken"]
    h = {"Authorization": f"Bearer {token}"}
    for path in (f"/shares/{A}%2F..%2F{B}/schemas", f"/shares/..%2F{B}/schemas/telcolake/tables",
                 f"/shares/{A}/schemas/..%2F..%2Fes-movistar/tables", f"/shares/{A}/schemas/telcolake/tables/..%2F..%2F{B}%2Froaming_records/metadata",
                 f"/shares/{A}/schemas/telcolake/tables/roaming_records%00/metadata", f"/shares/{A}/schemas/telcolake/tables/.../version"):
        r = requests.get(server.endpoint + path, headers=h, timeout=5)
        assert r.status_code in (400, 404), path
    r = requests.get(f"{server.endpoint}/shares/{A}/schemas/telcolake/tables/roaming_records/version", headers=h, timeout=5)
    assert r.status_code == 200 and r.headers["Delta-Table-Version"] == "1"


def test_access_log_records_partner_table_version_rows(server):
    profile = server.profile(A)
    assert requests.get(f"{server.endpoint}/shares", headers={"Authorization": "Bearer tlk_nope_x"}, timeout=5).status_code == 401
    delta_sharing.load_as_pandas(url(profile, "roaming_records"))
    server.app.state.access_log.flush()
    log = server.env.lake.read(ACCESS_LOG).to_pylist()
    # rows of a Delta table come back in file order, not commit order: the newest query is the latest `at`
    queries = sorted((r for r in log if r["operation"] == "query" and r["status"] == 200 and r["table"] == "roaming_records"), key=lambda r: r["at"])
    assert queries and queries[-1]["partner_id"] == A and queries[-1]["version"] == 1 and queries[-1]["rows"] == 16
    assert queries[-1]["files"] == len(server.env.lake.table(f"shares/{A}/roaming_records").get_add_actions(flatten=True))
    assert any(r["status"] == 401 and r["operation"] == "list_shares" for r in log) and any(r["operation"] == "file" for r in log)


def raw_http(port: int, head: bytes, body: bytes = b"", *, read_timeout: float = 10.0) -> tuple[int, bytes]:
    """Send bytes on a fresh socket; return the status code and the response bytes (to EOF or timeout)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head + body)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
    return int(data.split(b" ", 2)[1]), data


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def log_rows(server) -> list[dict]:
    server.app.state.access_log.flush()
    return server.env.lake.read(ACCESS_LOG).to_pylist()


QUERY = f"/shares/{A}/schemas/telcolake/tables/roaming_records/query"


class TestHostileRequests:
    """Malformed, oversized and mistyped requests get a 4xx (never a 5xx), each is logged, and good requests still work."""

    def test_deeply_nested_and_non_json_bodies_are_400_and_logged(self, server):
        token = server.token(A)
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        bodies = [b"[" * 20_000 + b"]" * 20_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"\xff\xfe\x00{", b"{\"version\": 1",
                  b"nan", b"[1, 2]", b'"text"', b"1" * 5000, b'{"version": ' + b"9" * 5000 + b"}", "{\"v\": \"\ud800\"}".encode("utf-8", "surrogatepass")]
        for body in bodies:
            r = requests.post(server.endpoint + QUERY, data=body, headers=h, timeout=10)
            assert r.status_code == 400, (body[:40], r.status_code, r.text[:200])
            assert r.json()["errorCode"] in ("MALFORMED_REQUEST", "INVALID_PARAMETER_VALUE")
        rows = [r for r in log_rows(server) if r["operation"] == "query" and r["status"] == 400]
        assert len(rows) >= len(bodies) and all(r["partner_id"] == A for r in rows)

    def test_every_protocol_field_has_a_strict_type(self, server):
        profile = server.profile(A)
        bad = [{"version": True}, {"version": False}, {"version": -1}, {"version": 1.0}, {"version": "1"}, {"version": 2**64},
               {"version": 7}, {"limitHint": True}, {"limitHint": -3}, {"limitHint": 2**40}, {"limitHint": "10"},
               {"timestamp": 1700000000000}, {"timestamp": "yesterday"}, {"timestamp": "x" * 1000}, {"timestamp": "0001-01-01T00:00:00+23:59"},
               {"timestamp": True}, {"predicateHints": "usage_date > '2026-01-01'"}, {"predicateHints": [1, 2]},
               {"jsonPredicateHints": {"op": "equal"}}, {"startingVersion": 0}, {"endingVersion": True},
               {"version": 0, "timestamp": "2026-10-05 00:00:00"}]
        for body in bad:
            r, _ = server.query(profile, "roaming_records", **body)
            assert r.status_code == 400, (body, r.status_code, r.text[:200])
        r, lines = server.query(profile, "roaming_records", version=0, limitHint=1, predicateHints=["usage_date > '2026-01-01'"],
                                jsonPredicateHints='{"op": "equal"}', futureField={"x": 1})
        assert r.status_code == 200 and r.headers["Delta-Table-Version"] == "0" and any("file" in line for line in lines)

    def test_query_parameters_are_strict(self, server):
        h = {"Authorization": f"Bearer {server.token(A)}"}
        changes = f"{server.endpoint}/shares/{A}/schemas/telcolake/tables/roaming_records/changes"
        for q in ("startingVersion=abc", "startingVersion=-1", "startingVersion=1e3", "startingVersion=true", "startingVersion=0&startingVersion=1",
                  "startingVersion=" + "9" * 30, "startingVersion=0&endingVersion=99", "startingTimestamp=soon", "startingVersion=0&endingTimestamp=%00",
                  "startingVersion=0&includeHistoricalMetadata=maybe", ""):
            r = requests.get(f"{changes}?{q}", headers=h, timeout=10)
            assert r.status_code == 400, (q, r.status_code, r.text[:200])
        for path in ("/shares?maxResults=-5", "/shares?maxResults=x", f"/shares/{A}/schemas?pageToken=" + "p" * 2000,
                     f"/shares/{A}/schemas/telcolake/tables/roaming_records/version?startingTimestamp=never"):
            assert requests.get(server.endpoint + path, headers=h, timeout=10).status_code == 400, path
        assert requests.get(f"{changes}?startingVersion=1&endingVersion=1", headers=h, timeout=10).status_code == 200

    def test_body_limit_refuses_before_reading(self, server):
        port = int(server.endpoint.split(":")[2].split("/")[0])
        token = server.token(A)
        head = (f"POST /delta-sharing{QUERY} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {32 << 20}\r\n\r\n").encode()
        status, data = raw_http(port, head)  # 32 MB announced, none of it sent: the answer must not wait for it
        assert status == 413 and b"REQUEST_TOO_LARGE" in data
        chunked = (f"POST /delta-sharing{QUERY} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                   "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        piece = b" " * 60_000
        body = b"".join(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
        status, _ = raw_http(port, chunked, body)
        assert status == 413
        ok = requests.post(server.endpoint + QUERY, json={"limitHint": 1}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert ok.status_code == 200
        assert sum(1 for r in log_rows(server) if r["status"] == 413 and r["operation"] == "query") >= 2

    def test_file_urls_come_from_the_configured_endpoint_never_the_host_header(self, server):
        token = server.token(A)
        for host in ("evil.example", "evil.example:443", "127.0.0.1:1", "[::1]:80"):
            r = requests.post(server.endpoint + QUERY, json={}, headers={"Authorization": f"Bearer {token}", "Host": host}, timeout=10)
            assert r.status_code == 200
            urls = [json.loads(line)["file"]["url"] for line in r.text.splitlines() if '"file"' in line]
            base = server.endpoint.removesuffix("/delta-sharing")
            assert urls and all(u.startswith(base + "/files/") and "evil" not in u for u in urls)
        r = requests.get(f"{server.endpoint}/shares/{A}/schemas/telcolake/tables/roaming_records/changes?startingVersion=0",
                         headers={"Authorization": f"Bearer {token}", "Host": "evil.example"}, timeout=10)
        assert r.status_code == 200 and "evil" not in r.text

    def test_refused_requests_of_every_kind_are_logged(self, server):
        h = {"Authorization": f"Bearer {server.token(A)}"}
        base = server.endpoint
        statuses = {
            requests.get(base + "/nowhere", headers=h, timeout=10).status_code: "unknown",
            requests.delete(base + "/shares", headers=h, timeout=10).status_code: "list_shares",
            requests.get(base + "/shares", headers={"Authorization": "Bearer " + "é" * 10}, timeout=10).status_code: "list_shares",
            requests.get(server.endpoint.removesuffix("/delta-sharing") + "/files/" + "é%00" * 3 + "/x.parquet", timeout=10).status_code: "file",
        }
        assert sorted(statuses) == [401, 403, 404, 405]
        logged = {(r["status"], r["operation"]) for r in log_rows(server)}
        assert {(404, "unknown"), (405, "list_shares"), (401, "list_shares"), (403, "file")} <= logged

    def test_fuzzed_requests_to_every_endpoint_are_never_5xx(self, server):
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        token = server.token(A)
        r, lines = server.query(server.profile(A), "roaming_records")
        file_url = next(line["file"]["url"] for line in lines if "file" in line)
        files_path = file_url.split("://", 1)[1].split("/", 1)[1]
        root = server.endpoint.removesuffix("/delta-sharing")
        table = f"/delta-sharing/shares/{A}/schemas/telcolake/tables"
        routes = [("GET", "/delta-sharing/shares"), ("GET", f"/delta-sharing/shares/{A}"), ("GET", f"/delta-sharing/shares/{A}/schemas"),
                  ("GET", table), ("GET", f"/delta-sharing/shares/{A}/all-tables"), ("GET", f"{table}/roaming_records/version"),
                  ("GET", f"{table}/roaming_settlement/metadata"), ("POST", "/delta-sharing" + QUERY), ("POST", f"{table}/roaming_settlement/query"),
                  ("GET", f"{table}/roaming_records/changes"), ("GET", "/" + files_path), ("HEAD", "/" + files_path),
                  ("POST", f"/delta-sharing/shares/{B}/schemas/telcolake/tables/roaming_records/query"), ("GET", "/delta-sharing/shares/%ff/x"),
                  ("GET", f"{table}/%2e%2e/metadata"), ("GET", "/files/x.y/z")]
        text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=40)
        leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
                         text, st.sampled_from(["2026-10-05 00:00:00", "nan", "-1", "0"]))
        json_value = st.recursive(leaf, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(text, kids, max_size=3), max_leaves=8)
        fields = st.sampled_from(["version", "timestamp", "limitHint", "predicateHints", "jsonPredicateHints", "startingVersion",
                                  "endingVersion", "x"])
        body = st.one_of(st.dictionaries(fields, json_value, max_size=4).map(lambda d: json.dumps(d).encode()),
                         st.binary(max_size=300), json_value.map(lambda v: json.dumps(v).encode()),
                         st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n))
        params = st.dictionaries(st.sampled_from(["startingVersion", "endingVersion", "startingTimestamp", "endingTimestamp",
                                                  "includeHistoricalMetadata", "maxResults", "pageToken", "x"]), text, max_size=3)
        auth = st.sampled_from([f"Bearer {token}"] * 6 + ["", "Bearer", "Basic abc", f"Bearer {token}x", "Bearer tlk_x_y", "bearer " + token])
        header_value = text.filter(lambda v: "\r" not in v and "\n" not in v)
        headers = st.fixed_dictionaries({"Authorization": auth}, optional={
            "Content-Type": header_value, "Host": header_value, "Range": st.one_of(header_value, st.sampled_from(
                ["bytes=0-3", "bytes=-4", "bytes=5-2", "bytes=99999999-", "bytes=0-0,2-3", "bytes=" + "9" * 40 + "-"])),
            "Accept-Encoding": header_value, "X-Forwarded-Host": header_value})
        failures, seen = [], {}

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(route=st.sampled_from(routes), other=st.sampled_from([None] * 8 + ["PUT", "DELETE", "POST", "GET"]), body=body,
               params=params, headers=headers)
        def fuzz(route, other, body, params, headers):
            method, path = other or route[0], route[1]
            hs = {k: v for k, v in headers.items() if v}
            try:
                r = requests.request(method, root + path, params=params, data=body if method in ("POST", "PUT") else None,
                                     headers=hs, timeout=20)
            except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
                return  # the client library refuses to send it at all
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            if r.status_code >= 500:
                failures.append((method, path, params, hs, body[:80], r.status_code, r.text[:200]))

        fuzz()
        assert failures == []
        assert seen.get(200, 0) >= 20 and seen.get(400, 0) >= 5 and seen.get(206, 0) + seen.get(403, 0) >= 1, seen  # it reached the handlers
        frame = delta_sharing.load_as_pandas(url(server.profile(A), "roaming_records"))  # the official client still reads
        assert len(frame) == 16
