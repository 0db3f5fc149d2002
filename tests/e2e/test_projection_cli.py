"""`magpie projection` on a real server's data: fit on the stored catalog, then the running
server embeds new items and upload searches through the projection; drop moves back."""
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.fixtures.catalog import encode, scene, serve_files
from tests.fixtures.server import (
    ADMIN_EMAIL,
    admin_headers,
    new_application,
    pipeline_env,
    start_server,
    stop_server,
    wait_transaction,
)

pytestmark = pytest.mark.e2e
N = 200  # the fewest items a projection is fitted on


def cli(data_dir, model_cache, *args):  # noqa: ANN001, ANN201
    env = {**os.environ, "MAGPIE_DATA_DIR": str(data_dir), "MAGPIE_ADMIN_EMAIL": ADMIN_EMAIL,
           **pipeline_env(model_cache)}
    return subprocess.run([sys.executable, "-m", "magpie.cli.main", "projection", *args],
                          env=env, capture_output=True, text=True, timeout=600)


def insert(url, auth, images, names):  # noqa: ANN001, ANN201
    form = {}
    for i, name in enumerate(names):
        form[f"im_name[{i}]"], form[f"im_url[{i}]"] = name, f"{images}/{name}.jpg"
    return wait_transaction(url, auth, httpx.post(f"{url}/insert", data=form, auth=auth).json()["trans_id"])


def load_catalog(url, images, name):  # noqa: ANN001, ANN201
    """A new application with the N pictures inserted; (app, auth, the model of item p7)."""
    app = new_application(url, name)
    auth = (app["access_key"], app["secret_key"])
    for start in range(0, N, 100):
        done = insert(url, auth, images, [f"p{i}" for i in range(start, start + 100)])
        assert done["success_count"] == 100, done
    return app, auth, model_of(url, auth, "p7")


def model_of(url, auth, name):  # noqa: ANN001, ANN201
    return httpx.get(f"{url}/v1/items/{name}", auth=auth).json()["result"][0]["model"]


def test_projection_fit_serve_and_drop(tmp_path, model_cache):
    data = tmp_path / "data"
    pictures = {f"p{i}.jpg": encode(scene(5000 + i), "JPEG", quality=90) for i in range(N + 1)}
    with serve_files(pictures) as images:
        server = start_server(data, pipeline_env(model_cache), timeout=120)
        try:
            app, auth, raw_model = load_catalog(server.url, images, "Projection")
        finally:
            stop_server(server)

        small = cli(data, model_cache, "show", "--app", app["app_id"])
        assert small.returncode == 0 and json.loads(small.stdout)["projection"] is None
        fit = cli(data, model_cache, "fit", "--app", app["app_id"], "--views", "2", "--dims", "64")
        assert fit.returncode == 0, fit.stderr
        fitted = json.loads(fit.stdout)
        assert (fitted["dim"], fitted["total"], fitted["rebuilt"], fitted["failed"]) == (64, N, True, [])
        assert fitted["model"] == f"{raw_model}+lw-{fitted['projection']}"
        shown = json.loads(cli(data, model_cache, "show", "--app", app["app_id"]).stdout)
        assert shown["projection"]["digest"] == fitted["projection"] and shown["projection"]["dim"] == 64

        server = start_server(data, pipeline_env(model_cache), timeout=120)
        try:
            assert model_of(server.url, auth, "p7") == fitted["model"]
            # A new item is embedded through the projection, or its 64-d index refuses it.
            assert insert(server.url, auth, images, [f"p{N}"])["success_count"] == 1
            assert model_of(server.url, auth, f"p{N}") == fitted["model"]
            # An upload search embeds its query the same way: the item finds itself first.
            found = httpx.post(f"{server.url}/uploadsearch", auth=auth, data={"score": "true"},
                               files={"image": ("q.jpg", pictures["p7.jpg"], "image/jpeg")}).json()
            assert found["status"] == "OK", found
            assert found["result"][0]["im_name"] == "p7" and found["result"][0]["score"] > 0.99
            similar = httpx.get(f"{server.url}/search", auth=auth, params={"im_name": "p7"}).json()
            assert similar["status"] == "OK" and len(similar["result"]) == 10
        finally:
            stop_server(server)

    dropped = cli(data, model_cache, "drop", "--app", app["app_id"])
    assert dropped.returncode == 0, dropped.stderr
    back = json.loads(dropped.stdout)
    assert back["dropped"] and back["rebuilt"] and back["model"] == raw_model and not back["failed"]
    shown = json.loads(cli(data, model_cache, "show", "--app", app["app_id"]).stdout)
    assert shown["projection"] is None and shown["auto"] is False  # drop keeps the server off it


def test_projection_refuses_a_small_catalog_and_a_running_server(tmp_path, model_cache):
    data = tmp_path / "data"
    server = start_server(data, pipeline_env(model_cache), timeout=120)
    try:
        app = new_application(server.url, "Small")
        with serve_files({"p0.jpg": encode(scene(1), "JPEG")}) as images:
            assert insert(server.url, (app["access_key"], app["secret_key"]), images, ["p0"])["success_count"] == 1
        running = cli(data, model_cache, "fit", "--app", app["app_id"])
        assert running.returncode == 1 and "stop `magpie serve`" in running.stderr
    finally:
        stop_server(server)
    small = cli(data, model_cache, "fit", "--app", app["app_id"])
    assert small.returncode == 1 and "too small" in small.stderr.lower(), small.stderr


def test_the_server_fits_a_catalog_at_rest_on_its_own(tmp_path, model_cache):
    """MAGPIE_AUTO_PROJECTION: the running server fits the projection once the catalog has
    enough items and is at rest, and moves the index over while searches go on."""
    data = tmp_path / "data"
    env = {**pipeline_env(model_cache), "MAGPIE_AUTO_PROJECTION_MIN_ITEMS": str(N),
           "MAGPIE_AUTO_PROJECTION_CHECK_S": "1"}
    pictures = {f"p{i}.jpg": encode(scene(7000 + i), "JPEG", quality=90) for i in range(N + 1)}
    with serve_files(pictures) as images:
        server = start_server(data, env, timeout=120)
        try:
            app, auth, raw_model = load_catalog(server.url, images, "Auto")
            answers, deadline = [], time.monotonic() + 240
            while "+lw-" not in model_of(server.url, auth, "p7"):
                assert time.monotonic() < deadline, "no projection was fitted"
                # Searches keep answering before, during and after the swap.
                answers.append(httpx.get(f"{server.url}/search", auth=auth,
                                         params={"im_name": "p3"}).json()["status"])
                time.sleep(0.2)
            fitted = model_of(server.url, auth, "p7")
            assert fitted.startswith(raw_model + "+lw-") and set(answers) <= {"OK"}, answers
            assert model_of(server.url, auth, "p150") == fitted
            assert insert(server.url, auth, images, [f"p{N}"])["success_count"] == 1
            assert model_of(server.url, auth, f"p{N}") == fitted
            found = httpx.post(f"{server.url}/uploadsearch", auth=auth, data={"score": "true"},
                               files={"image": ("q.jpg", pictures["p7.jpg"], "image/jpeg")}).json()
            assert found["status"] == "OK", found
            assert found["result"][0]["im_name"] == "p7" and found["result"][0]["score"] > 0.99
            # The admin API says so too (and only to the application's own account).
            status = httpx.get(f"{server.url}/admin/v1/apps/{app['app_id']}/projection",
                               headers=admin_headers(server.url))
            assert status.status_code == 200, status.text
            body = status.json()
            assert body["auto"] is True and body["model"] == raw_model
            assert fitted.endswith(body["projection"]["digest"])
            assert (body["projection"]["dim"], body["projection"]["items"]) == (N - 1, N)
            missing = httpx.get(f"{server.url}/admin/v1/apps/app_0000000000000000/projection",
                                headers=admin_headers(server.url))
            assert missing.status_code == 404
            assert missing.headers["content-type"].startswith("application/problem+json")
        finally:
            stop_server(server)
    shown = json.loads(cli(data, model_cache, "show", "--app", app["app_id"]).stdout)
    assert fitted.endswith(shown["projection"]["digest"]) and shown["projection"]["dim"] == N - 1
    assert shown["auto"] is True and shown["projection"]["items"] == N
