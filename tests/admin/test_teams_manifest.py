"""`signoff teams manifest`: the app package an admin uploads to Teams, run as a real process."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import uuid
import zipfile
import zlib
from pathlib import Path

import pytest

from tests.cli import run_signoff
from tests.config.test_teams_config import APP_ID, TEAMS_CONFIG, TEAMS_ENVIRON, with_line

OTHER_APP_ID = "5b1e9a47-2c3d-4e5f-8a6b-7c8d9e0f1a2b"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def signoff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # cwd: the Teams SDK reads a .env file from the working directory.
    return run_signoff(*args, cwd=cwd, env=TEAMS_ENVIRON)


def write_package(directory: Path, config_text: str, name: str) -> Path:
    """Run ``signoff teams manifest`` for ``config_text``; the package it wrote."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{name}.yaml"
    config.write_text(config_text, encoding="utf-8")
    output = directory / f"{name}.zip"

    result = signoff(
        "teams", "manifest", "--config", str(config), "--output", str(output), cwd=directory
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"wrote {output}: upload it in Teams (Apps, Manage your apps, Upload an app)\n"
    )
    return output


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered RGBA rows of an 8-bit RGBA PNG; fails on anything else."""
    assert data.startswith(PNG_SIGNATURE)
    offset = len(PNG_SIGNATURE)
    chunks: list[tuple[bytes, bytes]] = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        offset += 12 + length
    assert offset == len(data)
    assert chunks[0][0] == b"IHDR"
    assert len(chunks[0][1]) == 13
    assert chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, colour, compression, filtering, interlace) == (8, 6, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * 4
    assert len(raw) == height * (1 + stride)
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (1 + stride)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        assert kind <= 4, f"unknown filter {kind}"
        for x in range(stride):
            left = line[x - 4] if x >= 4 else 0
            up = previous[x]
            up_left = previous[x - 4] if x >= 4 else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[x] = (line[x] + _paeth(left, up, up_left)) & 0xFF
        rows.append(bytes(line))
        previous = bytes(line)
    return width, height, rows


def _paeth(left: int, up: int, up_left: int) -> int:
    guess = left + up - up_left
    to_left, to_up, to_up_left = abs(guess - left), abs(guess - up), abs(guess - up_left)
    if to_left <= to_up and to_left <= to_up_left:
        return left
    return up if to_up <= to_up_left else up_left


def pixels(rows: list[bytes]) -> set[bytes]:
    return {row[x : x + 4] for row in rows for x in range(0, len(row), 4)}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The package for APP_ID written twice, and one for another app id."""
    base = tmp_path_factory.mktemp("teams-manifest")
    other = TEAMS_CONFIG.replace(APP_ID, OTHER_APP_ID)
    return {
        "first": write_package(base / "first", TEAMS_CONFIG, "first"),
        "second": write_package(base / "second", TEAMS_CONFIG, "second"),
        "other": write_package(base / "other", other, "other"),
    }


def manifest_of(package: Path) -> dict[str, object]:
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert isinstance(manifest, dict)
    return manifest


def test_package_holds_the_manifest_and_both_icons(packages: dict[str, Path]) -> None:
    with zipfile.ZipFile(packages["first"]) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        color = decode_png(archive.read("color.png"))
        outline = decode_png(archive.read("outline.png"))

    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert color[:2] == (192, 192)
    assert outline[:2] == (32, 32)
    assert all(pixel[3] == 255 for pixel in pixels(color[2])), "the colour icon is opaque"
    outline_pixels = pixels(outline[2])
    white, clear = b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"
    assert outline_pixels == {white, clear}, "the outline icon is white on transparent"


def test_manifest_names_the_bot_and_the_public_host(packages: dict[str, Path]) -> None:
    manifest = manifest_of(packages["first"])

    assert manifest["bots"] == [
        {
            "botId": APP_ID,
            "scopes": ["personal", "team"],
            "supportsFiles": False,
            "isNotificationOnly": False,
        }
    ]
    assert manifest["validDomains"] == ["signoff.example.com"]
    assert isinstance(manifest["version"], str)
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    assert manifest["manifestVersion"] == "1.17"


def test_package_id_is_a_guid_stable_per_bot(packages: dict[str, Path]) -> None:
    first, second, other = (manifest_of(packages[key])["id"] for key in packages)

    assert isinstance(first, str)
    assert str(uuid.UUID(first)) == first
    assert first != APP_ID  # the app's own id, not the bot's
    assert second == first
    assert other != first
    assert manifest_of(packages["other"])["bots"] == [
        {
            "botId": OTHER_APP_ID,
            "scopes": ["personal", "team"],
            "supportsFiles": False,
            "isNotificationOnly": False,
        }
    ]


def test_without_platforms_teams_the_command_says_what_is_missing(tmp_path: Path) -> None:
    start, end = TEAMS_CONFIG.index("platforms:"), TEAMS_CONFIG.index("people:")
    text = TEAMS_CONFIG[:start] + TEAMS_CONFIG[end:]
    text = with_line("  ops:", "", with_line("channels:", "", text))
    config = tmp_path / "signoff.yaml"
    config.write_text(text.replace("notify: [ops, dm]", "notify: [web]"), encoding="utf-8")
    output = tmp_path / "out.zip"

    result = signoff(
        "teams", "manifest", "--config", str(config), "--output", str(output), cwd=tmp_path
    )

    assert result.returncode == 2
    assert f"{config}: platforms.teams is not configured" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()


@pytest.mark.parametrize(
    ("where", "reason"),
    [("missing/out.zip", "No such file or directory"), ("a-directory", "Is a directory")],
    ids=["missing-folder", "directory"],
)
def test_unwritable_output_is_a_usage_error(tmp_path: Path, where: str, reason: str) -> None:
    config = tmp_path / "signoff.yaml"
    config.write_text(TEAMS_CONFIG, encoding="utf-8")
    (tmp_path / "a-directory").mkdir()
    output = tmp_path / where

    result = signoff(
        "teams", "manifest", "--config", str(config), "--output", str(output), cwd=tmp_path
    )

    assert result.returncode == 2
    assert f"{output}: cannot write: {reason}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
