"""`magpie reindex` on a real server's data: refused while it runs, then run offline.

Only efficientnet-lite0's weights are installed, so a real model change is covered by
tests/integration/test_reindex.py (a fake model's index re-embedded with lite0); here the
CLI re-embeds with the same model (--force) and refuses a model it cannot load."""
import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.fixtures.images import serve
from tests.fixtures.server import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    pipeline_env,
    start_server,
    wait_transaction,
    stop_server,
)

pytestmark = pytest.mark.e2e


def reindex_cli(data_dir, model_cache, app_id, *args, model=None):  # noqa: ANN001, ANN201
    env = {**os.environ, "MAGPIE_DATA_DIR": str(data_dir), "MAGPIE_ADMIN_EMAIL": ADMIN_EMAIL,
           **pipeline_env(model_cache), **({"MAGPIE_EMBEDDING_MODEL": model} if model else {})}
    return subprocess.run([sys.executable, "-m", "magpie.cli.reindex", "--app", app_id, *args],
                          env=env, capture_output=True, text=True, timeout=600)


def test_reindex_refuses_a_running_server_then_reembeds_offline(tmp_path, model_cache):
    data = tmp_path / "data"
    server = start_server(data, pipeline_env(model_cache), timeout=120)
    try:
        token = httpx.post(f"{server.url}/admin/v1/sessions",
                           json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()["token"]
        app = httpx.post(f"{server.url}/admin/v1/apps", json={"name": "Reindex"},
                         headers={"Authorization": f"Bearer {token}"}).json()
        auth = (app["access_key"], app["secret_key"])
        with serve() as images:
            form = {f"im_{k}[{i}]": v for i, ext in enumerate(("png", "webp", "jpg"))
                    for k, v in (("name", f"item-{ext}"), ("url", f"{images}/ok/x.{ext}"))}
            trans_id = httpx.post(f"{server.url}/insert", data=form, auth=auth).json()["trans_id"]
            assert wait_transaction(server.url, auth, trans_id)["success_count"] == 3
        model = httpx.get(f"{server.url}/v1/items/item-png", auth=auth).json()["result"][0]["model"]
        running = reindex_cli(data, model_cache, app["app_id"])
        assert running.returncode == 1 and "stop `magpie serve`" in running.stderr
    finally:
        stop_server(server)

    unchanged = json.loads(reindex_cli(data, model_cache, app["app_id"]).stdout)
    assert (unchanged["model"], unchanged["total"], unchanged["skipped"]) == (model, 3, 3)
    forced = reindex_cli(data, model_cache, app["app_id"], "--force")
    assert forced.returncode == 0, forced.stderr
    report = json.loads(forced.stdout)
    assert (report["total"], report["skipped"], report["cached"], report["failed"]) == (3, 0, 3, [])
    assert "re-embedding" in forced.stderr  # the progress bar
    # Colour backfill: these items got their colours at ingest, so there is nothing to do.
    colors = reindex_cli(data, model_cache, app["app_id"], "--colors")
    assert colors.returncode == 0, colors.stderr
    filled = json.loads(colors.stdout)
    assert (filled["total"], filled["skipped"], filled["added"], filled["failed"]) == (3, 3, 0, [])
    assert "colours" in colors.stderr  # the progress bar
    missing = reindex_cli(data, model_cache, app["app_id"], model="efficientnet-lite2")
    assert missing.returncode == 1 and "Cannot load the embedding model" in missing.stderr

    server = start_server(data, pipeline_env(model_cache), timeout=120)
    try:
        item = httpx.get(f"{server.url}/v1/items/item-png", auth=auth).json()["result"][0]
        assert item["model"] == model and item["im_url"].endswith("/ok/x.png")
    finally:
        stop_server(server)
