"""Form input through the API's own wire models, and errors keyed by the form field they belong to."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from magpie.common.errors import MagpieError, NotFound, Unauthorized

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class FormInvalid(Exception):
    """A form's values broke the API's rules; `errors` maps each input name to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate form values with the API's pydantic model, so both refuse the same input."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for e in exc.errors():
            name = str(e["loc"][0]) if e.get("loc") else "form"
            errors.setdefault(name, e["msg"])
        raise FormInvalid(errors) from None


def checkbox(value: object) -> bool:
    """An HTML checkbox: present (any value but 'false'/'0') means on."""
    return isinstance(value, str) and value not in ("", "false", "0", "off")


async def submit(call: Awaitable[T], field_of: str | Callable[[MagpieError], str]) -> T:
    """Await a use case; a refusal becomes FormInvalid at `field_of` (not-found and role errors
    still become their pages)."""
    try:
        return await call
    except (NotFound, Unauthorized):
        raise
    except MagpieError as err:
        name = field_of(err) if callable(field_of) else field_of
        raise FormInvalid({name: err.detail}) from None
