"""Hostile images on ``POST /v1/check``: a decompression bomb Pillow itself refuses, a PNG cut
after its signature, and multipart forms the parser refuses all get a 4xx that says what to send,
never an internal error."""

from __future__ import annotations

import struct
import zlib

from tests.service.conftest import FEATURES, in_process_service


def _png_header(width: int, height: int) -> bytes:
    """A grayscale PNG of ``width`` x ``height`` whose one IDAT row is all the data there is."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + chunk(b"IEND", b"")
    )


def _check(service, user, body: bytes, content_type: str = "image/png"):
    return service.request(
        "POST", "/v1/check", content=body, headers={**user, "content-type": content_type}
    )


def test_a_decompression_bomb_is_refused_as_too_large(tmp_path):
    with in_process_service(tmp_path, feature_extractor=FEATURES) as service:
        user = service.token("alice")
        response = _check(service, user, _png_header(20_000, 20_000))  # 4e8 pixels
        assert response.status_code == 413
        assert response.json()["detail"] == "upload too large"
        assert "Downscale the image" in response.json()["problems"][0]


def test_a_png_cut_after_its_signature_says_so_without_internals(tmp_path):
    with in_process_service(tmp_path, feature_extractor=FEATURES) as service:
        user = service.token("alice")
        response = _check(service, user, _png_header(28, 28)[:8])
        assert response.status_code == 422
        problem = response.json()["problems"][0]
        assert problem == "Could not read the PNG header: not a complete PNG file."


def test_a_multipart_form_with_two_files_is_an_invalid_image(tmp_path):
    png = _png_header(28, 28)
    with in_process_service(tmp_path, feature_extractor=FEATURES) as service:
        user = service.token("alice")
        response = service.request(
            "POST",
            "/v1/check",
            files=[("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))],
            headers=user,
        )
        assert response.status_code == 422
        body = response.json()
        assert body["detail"] == "invalid image"
        assert "too many files" in body["problems"][0].lower()
        assert "named 'image'" in body["problems"][1]


def test_a_multipart_form_without_a_boundary_is_an_invalid_image(tmp_path):
    with in_process_service(tmp_path, feature_extractor=FEATURES) as service:
        user = service.token("alice")
        response = _check(service, user, b"abc", "multipart/form-data")
        assert response.status_code == 422
        assert response.json()["detail"] == "invalid image"
        assert "boundary" in response.json()["problems"][0]
