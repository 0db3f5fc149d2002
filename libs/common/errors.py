"""The one table of typed errors.

Each error carries its ViSearch code and message (for the public API's envelope), its HTTP
status (for the admin API's problem JSON) and whether a bus consumer should retry it. The
HTTP mapping lives in `magpie.gateway.errors`, the retry mapping in the bus adapters; nothing
else decides either.
"""
from __future__ import annotations

from typing import Any, ClassVar


class _Lenient(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class MagpieError(Exception):
    """Base of every error Magpie raises on purpose."""

    code: ClassVar[int] = 32
    message: ClassVar[str] = "System error."
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, **context: Any) -> None:
        # The message template may name context values ("{field} should be ..."); missing
        # ones stay as written rather than raising while an error is being reported.
        self.detail = detail or self.message.format_map(_Lenient(context))
        self.context = context
        super().__init__(self.detail)

    def to_item(self) -> dict[str, Any]:
        """The data-API error object: code, message and any context (im_name, index)."""
        return {"error_code": self.code, "error_message": self.detail, **self.context}


# --- auth ---------------------------------------------------------------------------------
class InvalidCredentials(MagpieError):
    code, message, http_status = 11, "Invalid access key or secret key.", 401


class Unauthorized(MagpieError):
    code, message, http_status = 12, "Unauthorized.", 403


class NotSignedIn(MagpieError):
    code, message, http_status = 12, "Sign-in required.", 401


class NotFound(MagpieError):
    code, message, http_status = 404, "Not found.", 404


class Conflict(MagpieError):
    code, message, http_status = 409, "Conflict.", 409


class InvalidRequest(MagpieError):
    """A client error in a request's shape or values."""

    code, message, http_status = 400, "Invalid request.", 400


class IndexModelMismatch(InvalidRequest):
    """The application's index holds vectors of another model than the one serving now (an
    upgrade changed the model): nothing a client can fix, so 503, and no retry helps either."""

    code, http_status, retryable = 32, 503, False
    message = ("The application's index was built with another model: an operator must run "
               "`magpie reindex --app APP_ID`.")

    @classmethod
    def dimensions(cls, app_id: str, have: int, want: int) -> IndexModelMismatch:
        """The error for an index of `have` dimensions meeting vectors of `want`."""
        return cls(f"The index of application {app_id} holds {have}-d vectors, the model now makes "
                   f"{want}-d ones: it was built with another model. An operator must run "
                   f"`magpie reindex --app {app_id}` (server stopped) to re-embed it.")


class LimitExceeded(MagpieError):
    code, message, http_status = 400, "Limit exceeded.", 400


# --- schema ---------------------------------------------------------------------------------
class SchemaError(InvalidRequest):
    """A schema definition breaks one of the seed's rules; `field` names the culprit."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


# --- data API (codes from the reference, §3) ------------------------------------------------
class TransactionNotFound(MagpieError):
    code, message, http_status = 101, "Transaction not found with trans_id.", 404


class ImageNameNotFound(MagpieError):
    code, message, http_status = 102, "Image not found with im_name.", 404


class BatchTooLarge(MagpieError):
    code, message, http_status = 103, "Exceeded maximum insert batch size of 100.", 400


class NothingInserted(MagpieError):
    code, message, http_status = 104, "No image inserted.", 400


class TooManyFields(MagpieError):
    code, message, http_status = 105, "Number of parameters for image exceeds maximum limit of 32.", 400


class ValueTooLong(MagpieError):
    code, message, http_status = 106, "{parameter} exceeds length limit.", 400


class InvalidImageName(MagpieError):
    code, message, http_status = 107, "Invalid im_name.", 400


class MissingImageUrl(MagpieError):
    code, message, http_status = 108, "Missing im_url.", 400


class WrongType(MagpieError):
    code, message, http_status = 109, "{field} should be of data type {type}.", 400


class DownloadFailed(MagpieError):
    code, message, http_status, retryable = 201, "Could not download the image from im_url.", 422, False


class UnsupportedFormat(MagpieError):
    code, message, http_status = 202, "Unsupported image format.", 422


class UnsupportedDimension(MagpieError):
    code, message, http_status = 203, "Unsupported image dimension.", 422


# --- search API (codes from the reference, §7; legacy search errors are strings) -----------
class ImageNotFound(MagpieError):
    code, message, http_status = 1101, "Image not found with im_name.", 404


class InvalidImageFormat(MagpieError):
    code, message, http_status = 1102, "Invalid image file format.", 400


class InvalidImageDimension(MagpieError):
    code, message, http_status = 1103, "The image format or dimension is invalid.", 400


class InvalidImageUrl(MagpieError):
    code, message, http_status = 1104, "Invalid image or im_url.", 400


class ImageDownloadFailed(MagpieError):
    code, http_status = 1105, 502
    message = "Could not download the image, please try again later."


class ImageDownloadTimeout(MagpieError):
    code, http_status = 1106, 504
    message = "Timeout while downloading image, please try again later."


class NoImages(MagpieError):
    code, message, http_status = 1107, "App doesn't have any images.", 404


class ImageIdNotFound(MagpieError):
    code, message, http_status = 1110, "Missing im_id.", 404


class MissingQueryImage(MagpieError):
    code, message, http_status = 1111, "Missing im_url or im_id.", 400


# --- infrastructure -------------------------------------------------------------------------
class Unavailable(MagpieError):
    """A dependency is down or busy: the operation may succeed later."""

    code, message, http_status, retryable = 31, "System busy, please try again later.", 503, True
