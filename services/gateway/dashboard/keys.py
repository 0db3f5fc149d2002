"""Integration: the application's key sets (list, create up to 10, revoke) and snippets."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from magpie.gateway.api.schemas import KeyCreated, KeyIn, KeyOut
from magpie.gateway.controlplane import apps as apps_uc
from magpie.gateway.dashboard.forms import FormInvalid, parse, submit
from magpie.gateway.dashboard.session import AdminForm, AppPage, field
from magpie.gateway.dashboard.web import Ctx, DashboardRoute, redirect, render

router = APIRouter(route_class=DashboardRoute)


SECRET_PLACEHOLDER = "YOUR_SECRET_KEY"


def snippets(host: str, key: KeyOut | None, secret: str | None = None) -> dict[str, str]:
    """Copy-ready examples for one key set: the visearch Python SDK, curl for /insert and /search,
    the web widgets, the JavaScript SDK and event tracking with the search-only app key. The secret appears only when it is known
    (right after the key set was created); otherwise a placeholder stands in for it."""
    access = key.access_key if key else "ACCESS_KEY"
    app_key = key.app_key if key else "APP_KEY"
    secret = secret or SECRET_PLACEHOLDER
    return {
        "Python SDK (visearch)": (
            "# pip install visearch\n"
            "from visearch import client\n\n"
            f'api = client.ViSearchAPI("{access}", "{secret}", host="{host}/")\n\n'
            "# Index images (Data API /insert); the answer carries a trans_id for api.insert_status().\n"
            'resp = api.insert([{"im_name": "red-dress-1", "im_url": "https://example.com/red-dress-1.jpg"}])\n'
            'print(resp["status"], resp.get("trans_id"))\n\n'
            "# Find similar to an indexed image, with scores.\n"
            'print(api.search("red-dress-1", score=True, limit=10))\n\n'
            "# Search by an image URL.\n"
            'print(api.uploadsearch(image_url="https://example.com/query.jpg", score=True))'),
        "curl: insert (Data API)": (
            f"curl -u '{access}:{secret}' '{host}/insert' \\\n"
            "  -F 'im_name[0]=red-dress-1' -F 'im_url[0]=https://example.com/red-dress-1.jpg'"),
        "curl: search": (
            f"curl -u '{access}:{secret}' \\\n"
            f"  '{host}/search?im_name=red-dress-1&score=true&limit=10'"),
        "Search from a web page (app key)": (
            f"fetch('{host}/search?access_key={app_key}&im_name=red-dress-1&score=true')\n"
            "  .then(r => r.json()).then(body => console.log(body.reqid, body.result));"),
        "Web widgets (app key)": widget_snippet(host, app_key),
        "JavaScript SDK, ES module (app key)": (
            '<script type="module">\n'
            f"  import {{ MagpieClient }} from '{host}/widgets/v1/magpie-sdk.js';\n\n"
            f"  const magpie = new MagpieClient({{ appKey: '{app_key}', host: '{host}' }});\n"
            "  const found = await magpie.search('red-dress-1', { limit: 12, fl: ['price'] });\n"
            "  console.log('magpie', found.reqid, found.result.map((r) => r.im_name).join(','));\n"
            "</script>"),
        "Tracking pixel (app key)": (
            f'<img alt="" width="1" height="1" src="{host}/v3/__va.gif?code={app_key}'
            '&action=product_click&queryId=REQID&pid=red-dress-1&pos=1">'),
        "Track events: POST /v3/events (app key)": (
            f"curl -X POST '{host}/v3/events?code={app_key}' \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            "  -d '{\"uid\": \"user-1\", \"events\": [{\"action\": \"product_click\", "
            "\"queryId\": \"REQID\", \"pid\": \"red-dress-1\", \"pos\": 1}]}'"),
    }


def widget_snippet(host: str, app_key: str) -> str:
    """The embed code of both web widgets (served by the gateway under /widgets/v1/)."""
    return (
        f'<script src="{host}/widgets/v1/magpie-widgets.js" defer></script>\n\n'
        "<!-- Search by image: shoppers upload a photo and see similar products. -->\n"
        f'<div data-magpie-widget="search-by-image" data-app-key="{app_key}" data-host="{host}"\n'
        '     data-fl="title,price,product_url,image_url"></div>\n\n'
        "<!-- Similar products on a product page: data-im-name is the product's im_name. -->\n"
        f'<div data-magpie-widget="similar" data-app-key="{app_key}" data-host="{host}"\n'
        '     data-im-name="red-dress-1" data-limit="12"></div>\n\n'
        "<!-- Optional: data-fq=\"category:shoes\" (a fixed filter); theme with --magpie-* CSS\n"
        "     variables on the element; data-host defaults to the script's origin. -->")


async def _page(request: Request, ctx: Ctx, status: int = 200, created: KeyCreated | None = None,
                **values: object) -> Response:
    assert ctx.app is not None
    keys = await apps_uc.list_keys(ctx.db, ctx.member.account_id, ctx.app.app_id)
    live = [k for k in keys if not k.revoked_at]
    host = str(request.base_url).rstrip("/")
    # One set of snippets per live key; the secret only for the key set created in this answer.
    per_key = [(k, snippets(host, k, created.secret_key if created and created.access_key == k.access_key
                            else None)) for k in live]
    return render(request, "integration.html", ctx, status=status, keys=keys, live=len(live),
                  max_keys=apps_uc.MAX_KEYS, created=created, per_key=per_key,
                  snippets=snippets(host, None),
                  done="Key revoked." if request.query_params.get("done") == "revoked" else None, **values)


@router.get("/apps/{app_id}/integration")
async def integration(request: Request, ctx: AppPage) -> Response:
    """Keys and snippets."""
    return await _page(request, ctx)


@router.post("/apps/{app_id}/keys")
async def create_key(request: Request, app_id: str, ctx: AppPage, form: AdminForm) -> Response:
    """Add a key set; its secret is shown on this answer only."""
    values = {"label": field(form, "label")}
    try:
        body = parse(KeyIn, values)
        created = await submit(apps_uc.create_key(ctx.db, ctx.member.account_id, app_id, body.label), "label")
    except FormInvalid as exc:
        return await _page(request, ctx, status=400, errors=exc.errors, values=values)
    return await _page(request, ctx, created=created)


@router.post("/apps/{app_id}/keys/{access_key}/revoke")
async def revoke_key(request: Request, app_id: str, access_key: str, ctx: AppPage, form: AdminForm) -> Response:
    """Revoke a key set at once."""
    await apps_uc.revoke_key(ctx.db, ctx.member.account_id, app_id, access_key)
    return redirect(request, f"/apps/{app_id}/integration?done=revoked")
