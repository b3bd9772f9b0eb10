"""Reading the inbox's HTML forms strictly: bounded size, URL-encoded, valid UTF-8, no repeats.

Forms are parsed here rather than by the framework so that junk gets a clear 4xx page,
never a 500: oversized bodies, other content types, bytes that are not UTF-8, repeated
fields and NUL characters (which PostgreSQL cannot store) are all refused up front.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_FORM_BYTES = 1024 * 1024
"""Far above any real form: a reason is at most a few thousand characters, and edited
params at most 256 KiB of JSON, which URL-encoding can make up to three times longer."""

MAX_FORM_FIELDS = 10
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class FormError(Exception):
    """The submitted form cannot be read. ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form body, or :class:`FormError`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        raise FormError(415, "this page only accepts forms sent by the web inbox")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise FormError(413, "the form is too large")
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(400, "the form is not valid UTF-8 form data") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise FormError(400, f"the form field {name!r} was sent more than once")
        if "\x00" in value:
            raise FormError(400, "the form contains a NUL character")
        fields[name] = value
    return fields
