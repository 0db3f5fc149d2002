"""Admin API (`/admin/v1`): team members, applications, keys and schemas. Thin routes."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from magpie.common.image_types import IMAGE_TYPES
from magpie.gateway.api.deps import Admin, CurrentMember, Db, Owner, Viewer, bearer_token, get_container
from magpie.gateway.api.schemas import (
    AppCreated,
    AppIn,
    AppOut,
    AppPatch,
    AppProjectionOut,
    FieldIn,
    FieldOut,
    FieldPatch,
    ImageTypeOut,
    KeyCreated,
    KeyIn,
    KeyOut,
    MemberIn,
    MemberOut,
    MemberPatch,
    SchemaIn,
    SchemaOut,
    SessionOut,
    SignIn,
)
from magpie.gateway.controlplane import apps, members, schema

router = APIRouter(prefix="/admin/v1", tags=["admin"])
NO_CONTENT = {"status_code": status.HTTP_204_NO_CONTENT, "response_class": Response}


@router.post("/sessions", response_model=SessionOut, tags=["auth"])
async def sign_in(body: SignIn, request: Request, db: Db) -> SessionOut:
    """Sign in with email and password; returns a bearer token."""
    ttl = get_container(request).settings.session_ttl_s
    return await members.sign_in(db, body.email, body.password, ttl)


@router.delete("/sessions", tags=["auth"], **NO_CONTENT)
async def sign_out(request: Request, db: Db, _: CurrentMember) -> None:
    """End the current session."""
    await members.sign_out(db, bearer_token(request))


@router.get("/me", response_model=MemberOut, tags=["auth"])
async def me(member: CurrentMember) -> MemberOut:
    """The signed-in member."""
    return MemberOut.model_validate(member)


@router.get("/image-types", response_model=list[ImageTypeOut])
async def image_types(_: Viewer) -> list[ImageTypeOut]:
    """The image types an application can choose."""
    return [ImageTypeOut(name=k, description=v) for k, v in IMAGE_TYPES.items()]


# --- members -----------------------------------------------------------------------------
@router.get("/members", response_model=list[MemberOut], tags=["members"])
async def list_members(db: Db, m: Viewer) -> list[MemberOut]:
    """Team members of your account."""
    return await members.list_members(db, m.account_id)


@router.post("/members", response_model=MemberOut, status_code=201, tags=["members"])
async def add_member(body: MemberIn, db: Db, m: Owner) -> MemberOut:
    """Add a team member (owners only)."""
    return await members.add_member(db, m.account_id, body)


@router.patch("/members/{member_id}", response_model=MemberOut, tags=["members"])
async def update_member(member_id: int, body: MemberPatch, db: Db, m: Owner) -> MemberOut:
    """Change a member's name, role or password (owners only)."""
    return await members.update_member(db, m.account_id, member_id, body)


@router.delete("/members/{member_id}", tags=["members"], **NO_CONTENT)
async def remove_member(member_id: int, db: Db, m: Owner) -> None:
    """Remove a team member (owners only); the last owner cannot be removed."""
    await members.remove_member(db, m.account_id, member_id)


# --- applications ------------------------------------------------------------------------
@router.get("/apps", response_model=list[AppOut], tags=["apps"])
async def list_apps(db: Db, m: Viewer) -> list[AppOut]:
    """Your account's applications."""
    return await apps.list_apps(db, m.account_id)


@router.post("/apps", response_model=AppCreated, status_code=201, tags=["apps"])
async def create_app(body: AppIn, db: Db, m: Admin) -> AppCreated:
    """Create an application; its first key set (with the secret, shown once) comes back."""
    return await apps.create_app(db, m.account_id, body)


@router.get("/apps/{app_id}", response_model=AppOut, tags=["apps"])
async def show_app(app_id: str, db: Db, m: Viewer) -> AppOut:
    """One application."""
    return await apps.show_app(db, m.account_id, app_id)


@router.get("/apps/{app_id}/projection", response_model=AppProjectionOut, tags=["apps"])
async def show_projection(app_id: str, request: Request, db: Db, m: Viewer) -> AppProjectionOut:
    """Whether the application's searches go through a catalog projection (fitted by the
    server once the catalog has `MAGPIE_AUTO_PROJECTION_MIN_ITEMS` items, or by
    `magpie projection fit`): similarity scores are cosines in its space."""
    from magpie.embedding.app_projection import projection_status

    app = await apps.show_app(db, m.account_id, app_id)  # 404 unless it is the account's
    c = get_container(request)
    base = await c.models.for_type(app.image_type)
    return AppProjectionOut(**await projection_status(c.objects, app_id, base))


@router.patch("/apps/{app_id}", response_model=AppOut, tags=["apps"])
async def rename_app(app_id: str, body: AppPatch, db: Db, m: Admin) -> AppOut:
    """Rename an application."""
    return await apps.rename_app(db, m.account_id, app_id, body.name)


@router.delete("/apps/{app_id}", tags=["apps"], **NO_CONTENT)
async def delete_app(app_id: str, db: Db, m: Admin) -> None:
    """Delete an application with its index, images and data. This cannot be undone."""
    await apps.delete_app(db, m.account_id, app_id)


# --- keys --------------------------------------------------------------------------------
@router.get("/apps/{app_id}/keys", response_model=list[KeyOut], tags=["keys"])
async def list_keys(app_id: str, db: Db, m: Viewer) -> list[KeyOut]:
    """The application's key sets (secrets are never listed)."""
    return await apps.list_keys(db, m.account_id, app_id)


@router.post("/apps/{app_id}/keys", response_model=KeyCreated, status_code=201, tags=["keys"])
async def create_key(app_id: str, db: Db, m: Admin, body: KeyIn | None = None) -> KeyCreated:
    """Create a key set (at most 10 live ones); the secret is shown only in this answer."""
    return await apps.create_key(db, m.account_id, app_id, body.label if body else "")


@router.delete("/apps/{app_id}/keys/{access_key}", response_model=KeyOut, tags=["keys"])
async def revoke_key(app_id: str, access_key: str, db: Db, m: Admin) -> KeyOut:
    """Revoke a key set; requests with it fail from now on."""
    return await apps.revoke_key(db, m.account_id, app_id, access_key)


# --- schema ------------------------------------------------------------------------------
@router.get("/schema/preset", response_model=list[FieldOut], tags=["schema"])
async def schema_preset(_: Viewer) -> list[FieldOut]:
    """The recommended fields, ready to add."""
    return schema.preset()


@router.get("/apps/{app_id}/schema", response_model=SchemaOut, tags=["schema"])
async def get_schema(app_id: str, db: Db, m: Viewer) -> SchemaOut:
    """The application's schema (im_name and im_url are always there)."""
    return await schema.get_schema(db, m.account_id, app_id)


@router.put("/apps/{app_id}/schema", response_model=SchemaOut, tags=["schema"])
async def set_schema(app_id: str, body: SchemaIn, db: Db, m: Admin) -> SchemaOut:
    """Replace the schema. Fields left out, or whose type changes, lose their data."""
    return await schema.set_schema(db, m.account_id, app_id, body.fields)


@router.post("/apps/{app_id}/schema/fields", response_model=SchemaOut, status_code=201, tags=["schema"])
async def add_field(app_id: str, body: FieldIn, db: Db, m: Admin) -> SchemaOut:
    """Add one field."""
    return await schema.add_field(db, m.account_id, app_id, body)


@router.patch("/apps/{app_id}/schema/fields/{name}", response_model=SchemaOut, tags=["schema"])
async def update_field(app_id: str, name: str, body: FieldPatch, db: Db, m: Admin) -> SchemaOut:
    """Change a field's type (its data is dropped) or searchable flag."""
    return await schema.update_field(db, m.account_id, app_id, name, body)


@router.delete("/apps/{app_id}/schema/fields/{name}", response_model=SchemaOut, tags=["schema"])
async def remove_field(app_id: str, name: str, db: Db, m: Admin) -> SchemaOut:
    """Remove a field and its data. This cannot be undone."""
    return await schema.remove_field(db, m.account_id, app_id, name)
