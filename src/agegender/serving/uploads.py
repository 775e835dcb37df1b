"""Request bodies read into memory under a size cap: a raw image, or multipart image fields.

Nothing is written to disk: the body is read into memory (at most `limit` bytes, 413 past it),
and multipart parts are held in spooled files whose spill threshold is the whole body's cap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from agegender.serving.errors import ApiError

DISCARD_LIMIT = 256 * 2**20
"""Bytes of a refused (too large) body read and thrown away before the 413 is sent. A client
such as Python's `urllib` sends the whole body before it reads the answer; were the server
to answer and close first, that client would see a connection reset instead of the 413.
Past this many bytes the connection is closed after all."""


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, refused with 413 as soon as it (or its declared length) passes `limit`,
    and with 408 when it has not arrived within `timeout_s` (a client trickling bytes must not
    hold a connection forever). A refused body is read on and discarded, up to
    `DISCARD_LIMIT` bytes and `timeout_s` more seconds, so that the client hears the 413."""
    chunks = _chunks(request)
    try:
        return await asyncio.wait_for(_read(request, chunks, limit), timeout_s)
    except TimeoutError:
        raise ApiError(408, "body_timeout", f"the upload did not arrive within {timeout_s:g} s"
                       ) from None
    except _TooLarge:
        with contextlib.suppress(TimeoutError, ClientDisconnect):
            await asyncio.wait_for(_discard(request, chunks), timeout_s)
        raise _too_large(limit) from None


class _TooLarge(Exception):
    """The body passed the limit; `read_body` discards the rest, then answers 413."""


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive (`Request.stream` cannot be resumed once left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _read(request: Request, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_content_length", f"Content-Length {declared!r} is not a "
                                                      "byte count")
        if int(declared) > limit:
            raise _TooLarge
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


async def _discard(request: Request, chunks: AsyncIterator[bytes]) -> None:
    """Read what is left of the body (up to `DISCARD_LIMIT` bytes), keeping none of it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DISCARD_LIMIT:
        return
    discarded = 0
    async for chunk in chunks:
        discarded += len(chunk)
        if discarded > DISCARD_LIMIT:
            return


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
