"""The Teams app package: a manifest naming signoff's bot, and the two icons Teams wants.

An admin uploads the package (a zip) in the Teams admin center or in Teams itself and
installs the app for people and teams; only then can signoff message them. The manifest
declares the bot in the ``personal`` and ``team`` scopes, without a messaging endpoint of
its own: Teams reaches the bot at the endpoint set on the Azure Bot resource
(``<public_url>/teams/messages``).
"""

from __future__ import annotations

import io
import json
import struct
import uuid
import zipfile
import zlib
from typing import Any
from urllib.parse import urlsplit

MANIFEST_SCHEMA = (
    "https://developer.microsoft.com/json-schemas/teams/v1.17/MicrosoftTeams.schema.json"
)
MANIFEST_VERSION = "1.17"
COLOR_ICON = "color.png"
OUTLINE_ICON = "outline.png"
BRAND_COLOUR = (0x2E, 0x5B, 0xBA)
"""The colour icon's fill (the outline icon must be white on transparent)."""


def build_manifest(*, app_id: str, public_url: str, version: str) -> dict[str, Any]:
    """The manifest of signoff's Teams app for the bot ``app_id``."""
    host = urlsplit(public_url).hostname or "localhost"
    # The app's own id: stable for one bot, so a re-upload updates the app, not a copy.
    package_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"signoff-teams-app:{app_id}"))
    return {
        "$schema": MANIFEST_SCHEMA,
        "manifestVersion": MANIFEST_VERSION,
        "version": version,
        "id": package_id,
        "developer": {
            "name": "signoff",
            "websiteUrl": public_url,
            "privacyUrl": public_url,
            "termsOfUseUrl": public_url,
        },
        "name": {"short": "signoff", "full": "signoff: human approval for AI agents"},
        "description": {
            "short": "Approve or deny what AI agents ask to do.",
            "full": (
                "signoff posts approval requests from AI agents as cards with Approve and "
                "Deny buttons, in channels and in a chat with you, and records who decided."
            ),
        },
        "icons": {"color": COLOR_ICON, "outline": OUTLINE_ICON},
        "accentColor": "#{:02X}{:02X}{:02X}".format(*BRAND_COLOUR),
        "bots": [
            {
                "botId": app_id,
                "scopes": ["personal", "team"],
                "supportsFiles": False,
                "isNotificationOnly": False,
            }
        ],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [host],
    }


def app_package(*, app_id: str, public_url: str, version: str) -> bytes:
    """The zip to upload to Teams: ``manifest.json`` and its icons."""
    manifest = build_manifest(app_id=app_id, public_url=public_url, version=version)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        package.writestr(COLOR_ICON, solid_png(192, (*BRAND_COLOUR, 255)))
        package.writestr(OUTLINE_ICON, outline_png(32))
    return buffer.getvalue()


def solid_png(size: int, rgba: tuple[int, int, int, int]) -> bytes:
    """A square PNG of one colour."""
    row = bytes(rgba) * size
    return _png(size, [row] * size)


def outline_png(size: int) -> bytes:
    """A white square frame on transparent: Teams' outline icon must be only white."""
    white, clear = bytes((255, 255, 255, 255)), bytes((0, 0, 0, 0))
    border = max(size // 8, 1)
    rows = []
    for y in range(size):
        edge_row = y < border or y >= size - border
        rows.append(
            b"".join(
                white if edge_row or x < border or x >= size - border else clear
                for x in range(size)
            )
        )
    return _png(size, rows)


def _png(size: int, rows: list[bytes]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    pixels = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
