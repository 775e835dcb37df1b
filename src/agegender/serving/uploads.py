"""Request bodies read into memory under a size cap: a raw image, or multipart image fields.

Nothing is written to disk: the body is read into memory (at most `limit` bytes, 413 past it),
and multipart parts are held in spooled files whose spill threshold is the whole body's cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from agegender.serving.errors import ApiError


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, refused with 413 as soon as it (or its declared length) passes `limit`,
    and with 408 when it has not arrived within `timeout_s` (a client trickling bytes must not
    hold a connection forever)."""
    try:
        return await asyncio.wait_for(_read(request, limit), timeout_s)
    except TimeoutError:
        raise ApiError(408, "body_timeout", f"the upload did not arrive within {timeout_s:g} s"
                       ) from None


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_content_length", f"Content-Length {declared!r} is not a "
                                                      "byte count")
        if int(declared) > limit:
            raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


async def image_uploads(request: Request, body: bytes, field: str, limit: int,
                        max_files: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image: the `field` parts of a multipart/form-data body, or the
    body itself. The Content-Type only says how the body is packed; what each image is, is
    sniffed from its bytes later."""
    if not is_multipart(request):
        return [("body", body)]
    parser = MultiPartParser(request.headers, _once(body), max_files=max_files,
                             max_fields=max_files, max_part_size=limit)
    parser.spool_max_size = limit  # parts stay in memory: the body is no larger than this
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise ApiError(400, "bad_multipart", f"multipart body: {error}") from None
    uploads = []
    for value in form.getlist(field):
        if isinstance(value, UploadFile):
            uploads.append((value.filename or field, await value.read()))
        else:
            uploads.append((field, value.encode("utf-8")))
    await form.close()
    if not uploads:
        raise ApiError(422, "missing_image", f"the multipart body has no {field!r} field")
    return uploads


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "upload_too_large",
                    f"the upload is larger than {limit / 2**20:g} MiB")
