"""Errors the API answers with: a status code, a stable code word and a message naming the input."""

from __future__ import annotations

from agegender.imageio import ImageReadError, ImageTooLargeError, NotAnImageError


class ApiError(Exception):
    """Answered as `{"error": {"status", "code", "message"}}` with `status` (and `headers`)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


def image_error(error: ImageReadError) -> ApiError:
    """The answer to an upload `decode_image` refused: 415 for content in no image format, 413
    for too many pixels, 422 for an image that cannot be decoded (empty, truncated, corrupt)."""
    if isinstance(error, NotAnImageError):
        return ApiError(415, "not_an_image", str(error))
    if isinstance(error, ImageTooLargeError):
        return ApiError(413, "image_too_large", str(error))
    return ApiError(422, "unreadable_image", str(error))
