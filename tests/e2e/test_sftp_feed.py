"""SFTP datafeed through a real `magpie serve`: asyncssh's client and OpenSSH's `sftp`, every mode,
the FULL safety guard, wrong credentials, path escapes, and a kill during a FULL feed."""
import csv
import gzip
import io
import os
import shutil
import signal
import subprocess
import sys
import time

import asyncssh
import httpx
import pytest

from tests.fixtures.images import serve
from tests.fixtures.server import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    free_port,
    pipeline_env,
    start_server,
    stop_server,
)

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH's sftp (openssh-client) missing")]
FINAL = {"done", "refused", "failed", "rejected", "skipped"}


def env_for(model_cache, port):
    return {**pipeline_env(model_cache), "MAGPIE_SFTP_PORT": str(port), "MAGPIE_SFTP_GUARD_MIN_ITEMS": "5"}


@pytest.fixture(scope="module")
def images():
    with serve() as url:
        yield url


@pytest.fixture(scope="module")
def site(tmp_path_factory, model_cache):
    port = free_port()
    srv = start_server(tmp_path_factory.mktemp("magpie") / "data", env_for(model_cache, port))
    srv.sftp_port, srv.env = port, env_for(model_cache, port)
    token = httpx.post(f"{srv.url}/admin/v1/sessions", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()
    srv.admin = {"Authorization": f"Bearer {token['token']}"}
    yield srv
    stop_server(srv)


def new_app(srv, name):
    """An application with a schema and an SFTP account: (app, data auth, sftp user, password)."""
    app = httpx.post(f"{srv.url}/admin/v1/apps", json={"name": name}, headers=srv.admin).json()
    httpx.put(f"{srv.url}/admin/v1/apps/{app['app_id']}/schema", headers=srv.admin,
              json={"fields": [{"name": "brand", "type": "string", "searchable": True}]}).raise_for_status()
    account = httpx.post(f"{srv.url}/admin/v1/apps/{app['app_id']}/sftp", headers=srv.admin).json()
    assert account["files"][0]["FULL"]["data"] == f"{app['app_key']}_FULL.csv.gz", account
    return app, (app["access_key"], app["secret_key"]), account["username"], account["password"]


def gz(rows, header=("im_name", "im_url", "brand")):
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(header)
    w.writerows(rows)
    return gzip.compress(text.getvalue().encode())


def connect(srv, username, password=None, key=None):
    return asyncssh.connect("127.0.0.1", srv.sftp_port, username=username, password=password,
                            client_keys=[key] if key else None, known_hosts=None, agent_path=None,
                            preferred_auth="publickey" if key else "password")


async def upload(sftp, tmp_path, name, data, marker=True):
    local = tmp_path / name
    local.write_bytes(data)
    await sftp.put(str(local), f"/indexing/{name}")
    if marker:
        await sftp.put(str(tmp_path / "empty.txt"), f"/indexing/{name.split('.')[0]}.txt")


async def read(sftp, path):
    async with sftp.open(path) as f:
        return await f.read()


def wait_feeds(srv, auth, n, timeout=60):
    """The app's feeds once `n` of them are finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feeds = httpx.get(f"{srv.url}/v1/feeds", auth=auth).json()["result"]
        if sum(f["state"] in FINAL and f["result_file"] is not None for f in feeds) >= n:
            return feeds
        time.sleep(0.2)
    raise AssertionError(f"feeds not finished in {timeout}s: {feeds}")


def names(srv, auth, candidates):
    return {n for n in candidates if httpx.get(f"{srv.url}/v1/items/{n}", auth=auth).status_code == 200}


def openssh(srv, user, commands, *, key=None, password=None, cwd=None):
    """Run OpenSSH's sftp with `commands` on stdin (a password goes through SSH_ASKPASS)."""
    args = ["sftp", "-P", str(srv.sftp_port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "NumberOfPasswordPrompts=1"]
    env = dict(os.environ)
    if key:
        args += ["-b", "-", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey"]
    else:
        askpass = cwd / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
        askpass.chmod(0o700)
        env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        args += ["-o", "PreferredAuthentications=password,keyboard-interactive"]
    return subprocess.run([*args, f"{user}@127.0.0.1"], input="\n".join(commands) + "\n", text=True,
                          capture_output=True, cwd=cwd, env=env, timeout=30, start_new_session=True)


async def test_full_feed_with_asyncssh_then_the_guard(site, images, tmp_path):
    app, auth, user, password = new_app(site, "SFTP full")
    key = app["app_key"]
    (tmp_path / "empty.txt").write_bytes(b"")
    first = [(f"item-{i}", f"{images}/ok/{i}.png", "Acme") for i in range(6)]
    second = first[1:] + [("item-1", f"{images}/ok/1b.png", "Zed"), ("new", f"{images}/404", "Acme")]
    async with connect(site, user, password=password) as conn, conn.start_sftp_client() as sftp:
        assert sorted(await sftp.listdir("/")) == [".", "..", "failed", "indexing", "processed", "processing"]
        await upload(sftp, tmp_path, f"{key}.csv.gz", gz(first))
        wait_feeds(site, auth, 1)
        await upload(sftp, tmp_path, f"{key}_FULL.csv.gz", gz(second))
        feeds = wait_feeds(site, auth, 2)
        full = feeds[0]
        assert (full["state"], full["mode"]) == ("done", "FULL"), full
        assert full["counts"]["removed"] == 1 and full["counts"]["duplicates"] == 1
        st = httpx.get(f"{site.url}/insert/status/{full['trans_id']}", auth=auth,
                       params={"error_limit": 50}).json()["result"][0]
        assert (st["processed_percent"], st["total"], st["fail_count"]) == (100, 8, 2), st
        assert {e["error_code"] for e in st["error_list"]} == {107, 201}
        result = await read(sftp, full["result_file"])
        assert "DONE: FULL feed" in result and "appears again on line 7" in result
        assert full["file"].startswith("/processed/") and await sftp.listdir("/indexing") == [".", ".."]

        # The guard: one row against a catalog of five.
        await upload(sftp, tmp_path, f"{key}_FULL.csv.gz", gz([("item-2", f"{images}/ok/2.png", "Acme")]))
        refused = wait_feeds(site, auth, 3)[0]
        assert refused["state"] == "refused" and "would remove 4 of the 5 items" in refused["error"], refused
        assert refused["file"].startswith("/failed/")
        assert "FULL feed refused" in await read(sftp, refused["result_file"])
        # A zip is refused with a clear status.
        await upload(sftp, tmp_path, f"{key}.zip", b"PK\x03\x04")
        rejected = wait_feeds(site, auth, 4)[0]
        assert rejected["state"] == "rejected" and ".csv.gz are accepted" in rejected["error"]
    assert names(site, auth, [f"item-{i}" for i in range(6)] + ["new"]) == {f"item-{i}" for i in range(1, 6)}
    item = httpx.get(f"{site.url}/v1/items/item-1", auth=auth).json()["result"][0]
    assert item["value_map"] == {"brand": "Zed"}  # the last row of a name won


def test_increment_and_delete_with_openssh_and_a_key(site, images, tmp_path):
    app, auth, user, _ = new_app(site, "SFTP increment")
    key = app["app_key"]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    cli = subprocess.run([sys.executable, "-m", "magpie.cli.main", "sftp", "add-key", "--app", app["app_id"],
                          "--key-file", str(tmp_path / "id.pub")], env={**os.environ, **site.env,
                         "MAGPIE_DATA_DIR": str(site.data_dir), "MAGPIE_ADMIN_EMAIL": ADMIN_EMAIL,
                         "MAGPIE_ADMIN_PASSWORD": ADMIN_PASSWORD}, capture_output=True, text=True)
    assert cli.returncode == 0 and cli.stdout.count("SHA256:") == 1, cli.stderr
    (tmp_path / "inc.csv.gz").write_bytes(gz([(f"p{i}", f"{images}/ok/{i}.jpg", "Puma") for i in range(4)]))
    (tmp_path / "del.csv.gz").write_bytes(gz([("p0",), ("p3",), ("ghost",)], header=("im_name",)))
    (tmp_path / "empty.txt").write_bytes(b"")
    run = openssh(site, user, ["cd /indexing", f"put inc.csv.gz {key}_INCREMENT.csv.gz",
                               f"put del.csv.gz {key}_DELETE.csv.gz", f"put empty.txt {key}_DELETE.txt",
                               f"put empty.txt {key}_INCREMENT.txt"], key=tmp_path / "id", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    inc, dele = sorted(wait_feeds(site, auth, 2), key=lambda f: f["created_at"])
    assert (inc["mode"], inc["state"], dele["mode"], dele["state"]) == ("INCREMENT", "done", "DELETE", "done")
    assert names(site, auth, ["p0", "p1", "p2", "p3"]) == {"p1", "p2"}
    st = httpx.get(f"{site.url}/insert/status/{dele['trans_id']}", auth=auth).json()["result"][0]
    assert (st["success_count"], st["fail_count"], st["error_list"][0]["error_code"]) == (2, 1, 102)
    show = subprocess.run([sys.executable, "-m", "magpie.cli.main", "sftp", "show", "--app", app["app_id"]],
                          env={**os.environ, **site.env, "MAGPIE_DATA_DIR": str(site.data_dir),
                               "MAGPIE_ADMIN_EMAIL": ADMIN_EMAIL, "MAGPIE_ADMIN_PASSWORD": ADMIN_PASSWORD},
                          capture_output=True, text=True)
    assert f'"port": {site.sftp_port}' in show.stdout and f"{key}_DELETE.csv.gz" in show.stdout, show.stderr
    run = openssh(site, user, ["ls /processed"], key=tmp_path / "id", cwd=tmp_path)
    assert "_INCREMENT.result.csv" in run.stdout, run.stdout


async def test_wrong_credentials_and_rotation(site, tmp_path):
    app, _, user, password = new_app(site, "SFTP creds")
    other, _, other_user, other_password = new_app(site, "SFTP other")
    for login, secret in ((user, "wrong"), ("nobody", password), (other_user, password)):
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(site, login, password=secret):
                pass
    assert openssh(site, user, ["ls"], password="wrong", cwd=tmp_path).returncode != 0
    ok = openssh(site, user, ["ls /"], password=password, cwd=tmp_path)
    assert ok.returncode == 0 and "indexing" in ok.stdout, ok.stderr
    rotated = httpx.post(f"{site.url}/admin/v1/apps/{app['app_id']}/sftp/password", headers=site.admin).json()
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(site, user, password=password):
            pass
    async with connect(site, user, password=rotated["password"]) as conn, conn.start_sftp_client() as sftp:
        assert "indexing" in await sftp.listdir("/")
    # Each account sees only its own folder.
    async with connect(site, other_user, password=other_password) as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPError):
            await sftp.listdir(f"/../{app['app_id']}")


async def test_path_escapes_are_refused(site, tmp_path):
    app, _, user, password = new_app(site, "SFTP escapes")
    (tmp_path / "x.csv.gz").write_bytes(b"x")
    async with connect(site, user, password=password) as conn, conn.start_sftp_client() as sftp:
        for path in ("../x.csv.gz", "/indexing/../../x.csv.gz", "/etc/x.csv.gz", "/processed/x.csv.gz",
                     "/indexing/sub/x.csv.gz"):
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.put(str(tmp_path / "x.csv.gz"), path)
        for path in ("/etc/passwd", "/../../etc/passwd", "../control.sqlite3"):
            with pytest.raises(asyncssh.SFTPError):
                await sftp.get(path, str(tmp_path / "got"))
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.symlink("/etc/passwd", "/indexing/link")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.mkdir("/indexing/sub")
        await sftp.put(str(tmp_path / "x.csv.gz"), "/indexing/x.csv.gz")  # the one place that works
        assert sorted(await sftp.listdir("/indexing")) == [".", "..", "x.csv.gz"]
        await sftp.remove("/indexing/x.csv.gz")
    run = openssh(site, user, ["put x.csv.gz ../../x.csv.gz", "get /etc/passwd", "ls /etc"], password=password,
                  cwd=tmp_path)
    assert "Permission denied" in run.stderr and not (tmp_path / "passwd").exists(), run.stderr
    assert not (site.data_dir / "x.csv.gz").exists() and not (site.data_dir / "sftp" / "x.csv.gz").exists()


def test_killed_during_a_full_feed_the_restart_completes_it(tmp_path, model_cache, images):
    port = free_port()
    env, data = env_for(model_cache, port), tmp_path / "data"
    srv = start_server(data, env)
    srv.sftp_port = port
    try:
        token = httpx.post(f"{srv.url}/admin/v1/sessions", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        srv.admin = {"Authorization": f"Bearer {token.json()['token']}"}
        app, auth, user, password = new_app(srv, "SFTP crash")
        form = {}
        for i in range(6):
            form[f"im_name[{i}]"], form[f"im_url[{i}]"] = f"old-{i}", f"{images}/ok/{i}.png"
        trans = httpx.post(f"{srv.url}/insert", data=form, auth=auth).json()["trans_id"]
        while httpx.get(f"{srv.url}/insert/status/{trans}", auth=auth).json()["result"][0]["processed_percent"] < 100:
            time.sleep(0.2)
        feed = gz([(f"old-{i}", f"{images}/slow?s=2&i={i}", "New") for i in range(3)]
                  + [("fresh", f"{images}/slow?s=2&i=9", "New")])
        (tmp_path / "f.csv.gz").write_bytes(feed)
        (tmp_path / "empty.txt").write_bytes(b"")
        run = openssh(srv, user, ["cd /indexing", f"put f.csv.gz {app['app_key']}.csv.gz",
                                  f"put empty.txt {app['app_key']}.txt"], password=password, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            feeds = httpx.get(f"{srv.url}/v1/feeds", auth=auth).json()["result"]
            if feeds and feeds[0]["state"] == "indexing":
                break
            time.sleep(0.05)
        assert feeds[0]["state"] == "indexing" and "removed" not in feeds[0]["counts"], feeds
    finally:
        srv.process.send_signal(signal.SIGKILL)
        srv.process.wait()
    srv = start_server(data, env)
    try:
        [done] = wait_feeds(srv, auth, 1)
        assert done["state"] == "done" and done["counts"]["removed"] == 3, done
        assert names(srv, auth, [f"old-{i}" for i in range(6)] + ["fresh"]) == {"old-0", "old-1", "old-2", "fresh"}
        st = httpx.get(f"{srv.url}/insert/status/{done['trans_id']}", auth=auth).json()["result"][0]
        assert (st["processed_percent"], st["success_count"], st["total"]) == (100, 7, 7), st
        assert "resumed the SFTP feeds" in srv.log()
    finally:
        stop_server(srv)
