"""Wire shapes of the control-plane API (separate from the storage tables)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["owner", "admin", "viewer"]
FieldTypeName = Literal["string", "text", "int", "float"]


class FieldIn(BaseModel):
    """A schema field as a client sends it. The type is checked by the schema rules."""

    name: str
    type: str
    searchable: bool = False


class FieldOut(BaseModel):
    name: str
    type: FieldTypeName
    searchable: bool


class SchemaIn(BaseModel):
    fields: list[FieldIn]


class SchemaOut(BaseModel):
    app_id: str
    version: int = Field(description="Increases with every change")
    mandatory: list[str] = ["im_name", "im_url"]
    fields: list[FieldOut]


class FieldPatch(BaseModel):
    type: str | None = None
    searchable: bool | None = None


class AppIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    image_type: str = "general"


class AppPatch(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class KeyOut(BaseModel):
    """A key set as listed: the secret is never shown again after creation."""

    model_config = ConfigDict(from_attributes=True)

    access_key: str
    app_key: str = Field(description="Search-only key, safe to embed in web pages")
    label: str
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyOut):
    secret_key: str = Field(description="Shown once; only its hash is stored")


class KeyIn(BaseModel):
    label: str = Field("", max_length=100)


class AppOut(BaseModel):
    app_id: str
    name: str
    image_type: str
    schema_version: int
    created_at: datetime


class ProjectionOut(BaseModel):
    """A stored catalog projection (learned whitening) of an application."""

    digest: str = Field(description="Names the projection in item model ids (`+lw-<digest>`)")
    kind: str
    dim: int = Field(description="Dimensions of the projected vectors the index holds")
    items: int | None = Field(None, description="Catalog size it was fitted for, when recorded")


class AppProjectionOut(BaseModel):
    """Whether an application's searches go through a catalog projection."""

    app_id: str
    model: str = Field(description="The image type's model (name@version) under the projection")
    auto: bool = Field(description="Whether the server may fit or refit it on its own "
                                   "(false after `magpie projection drop`)")
    projection: ProjectionOut | None = None


class AppCreated(AppOut):
    """A new application with its first key set (the secret is shown only here)."""

    access_key: str
    secret_key: str
    app_key: str


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: Role
    created_at: datetime


class MemberIn(BaseModel):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field("", max_length=200)
    role: Role = "viewer"
    password: str = Field(min_length=8, max_length=200)


class MemberPatch(BaseModel):
    name: str | None = Field(None, max_length=200)
    role: Role | None = None
    password: str | None = Field(None, min_length=8, max_length=200)


class SignIn(BaseModel):
    email: str
    password: str


class SessionOut(BaseModel):
    token: str
    expires_at: datetime
    member: MemberOut


class ImageTypeOut(BaseModel):
    name: str
    description: str
