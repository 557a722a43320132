"""The Delta Sharing server against the real `delta-sharing` client, on a free port in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import delta_sharing
import pandas as pd
import pytest
import requests
import uvicorn
from delta_sharing.protocol import Schema, Share
from requests.exceptions import HTTPError

from pipelines.sharing.access_log import ACCESS_LOG
from pipelines.sharing.publish import publish
from pipelines.sharing.server import create_app
from pipelines.sharing.signing import FileGrant
from pipelines.sharing.tokens import create_token, revoke_tokens
from tests.unit.sharing.data import DAY, Builder

pytestmark = pytest.mark.timeout(60)  # the client retries 5xx for ~100 s; fail fast instead
A, B = "fr-orange", "es-movistar"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    def __init__(self, env, endpoint: str, app, tmp: Path) -> None:
        self.env, self.endpoint, self.app, self.tmp = env, endpoint, app, tmp

    def profile(self, partner: str, *, days: float = 1, now: datetime | None = None, token: str | None = None) -> str:
        issued = create_token(self.env.settings, partner, days=days, now=now)
        body = issued.profile(self.endpoint)
        if token is not None:
            body["bearerToken"] = token
        path = self.tmp / f"{partner}-{issued.token_id}.share"
        path.write_text(json.dumps(body))
        return str(path)

    def query(self, profile: str, table: str, **body) -> tuple[requests.Response, list[dict]]:
        token = json.loads(Path(profile).read_text())["bearerToken"]
        r = requests.post(f"{self.endpoint}/shares/{A}/schemas/telcolake/tables/{table}/query", json=body,
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return r, [json.loads(line) for line in r.text.splitlines() if line]


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
    port = _free_port()
    app = create_app(env.settings, log_interval=0.2, endpoint=f"http://127.0.0.1:{port}/delta-sharing")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield Running(env, f"http://127.0.0.1:{port}/delta-sharing", app, tmp_path_factory.mktemp("profiles"))
    srv.should_exit = True
    thread.join(timeout=10)


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
