"""Kill the standalone process mid-ingest: the next start finishes every item, once."""
import signal
import time

import httpx
import pytest

from tests.fixtures.images import serve
from tests.fixtures.server import ADMIN_EMAIL, ADMIN_PASSWORD, pipeline_env, start_server, stop_server

pytestmark = pytest.mark.e2e
N = 24


def test_sigkill_during_ingest_loses_nothing_and_indexes_nothing_twice(tmp_path, model_cache):
    data = tmp_path / "data"
    env = pipeline_env(model_cache)
    with serve() as images:
        server = start_server(data, env)
        try:
            token = httpx.post(f"{server.url}/admin/v1/sessions",
                               json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()["token"]
            app = httpx.post(f"{server.url}/admin/v1/apps", json={"name": "Crash"},
                             headers={"Authorization": f"Bearer {token}"}).json()
            auth = (app["access_key"], app["secret_key"])
            # Slow images keep most items in flight when the process dies.
            form = {}
            for i in range(N):
                form[f"im_name[{i}]"] = f"item-{i}"
                form[f"im_url[{i}]"] = f"{images}/slow?s=1.5&i={i}"
            trans_id = httpx.post(f"{server.url}/insert", data=form, auth=auth).json()["trans_id"]
            time.sleep(1.0)
        finally:
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
        before = images.state.hits["/slow"]
        assert before < 2 * N, "the kill came after the ingest had finished"

        server = start_server(data, env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                st = httpx.get(f"{server.url}/insert/status/{trans_id}", auth=auth).json()["result"][0]
                if st["processed_percent"] == 100:
                    break
                time.sleep(0.3)
            assert (st["total"], st["success_count"], st["fail_count"]) == (N, N, 0), st
            info = httpx.get(f"{server.url}/v1/app", auth=auth).json()
            assert info["item_count"] == N
            for i in range(N):
                assert httpx.get(f"{server.url}/v1/items/item-{i}", auth=auth).status_code == 200
            assert "replayed" in server.log()
        finally:
            stop_server(server)
