"""OCR of image-only PDF pages with the system's tesseract (optional: without it such pages stay flagged as empty).

Only a page with no text layer at all is OCR'd, and only its largest image (a scan is one image per page). The
image is handed to tesseract as it is stored: JPEG and JPEG 2000 as they are, Flate-compressed grey, RGB or 1-bit
pixels written out as a PNM file, CCITT fax wrapped in a TIFF header; no Pillow, no renderer. OCR costs seconds a
page, so each page's text is cached by its image's SHA-256 under the cache folder: a PDF edited elsewhere, or
ingested again into another knowledge base, is OCR'd only for its new pages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from deepkb.paths import cache_root

OCR_TIMEOUT_S = 120  # one page
OCR_ENGINE_MODE = "1"  # the LSTM engine (tesseract 4+)
OCR_ENCODING = "ocr"  # documents.encoding of a PDF whose text-less pages went through OCR
OCRProgress = Callable[[int, int], None]  # (pages done, pages to OCR)


def tesseract() -> str | None:
    """The tesseract executable on PATH (or DEEPKB_TESSERACT), None when it is not installed."""
    given = os.environ.get("DEEPKB_TESSERACT")
    if given is not None:
        return given if given and Path(given).is_file() else None
    return shutil.which("tesseract")


def tesseract_version(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else None


def page_image(page) -> tuple[bytes, str] | None:
    """The page's largest image as (file bytes, suffix) tesseract can read; None when it has none it can read."""
    from pypdf.generic import IndirectObject

    try:
        xobjects = page["/Resources"]["/XObject"].get_object()
    except (KeyError, TypeError, AttributeError):
        return None
    best = None
    for ref in xobjects.values():
        obj = ref.get_object() if isinstance(ref, IndirectObject) else ref
        if obj.get("/Subtype") != "/Image":
            continue
        area = int(obj.get("/Width", 0)) * int(obj.get("/Height", 0))
        if best is None or area > best[0]:
            best = (area, obj)
    return _image_file(best[1]) if best else None


def _image_file(obj) -> tuple[bytes, str] | None:
    filters = obj.get("/Filter")
    names = [str(f) for f in (filters if isinstance(filters, list) else [filters] if filters else [])]
    width, height = int(obj["/Width"]), int(obj["/Height"])
    last = names[-1] if names else None
    if last == "/DCTDecode" and len(names) == 1:
        return obj._data, ".jpg"
    if last == "/JPXDecode" and len(names) == 1:
        return obj._data, ".jp2"
    if last == "/CCITTFaxDecode" and len(names) == 1:
        parms = obj.get("/DecodeParms") or {}
        return _ccitt_tiff(
            obj._data, width, height, int(parms.get("/K", 0)), bool(parms.get("/BlackIs1", False))
        ), ".tif"
    if names and any(n not in ("/FlateDecode", "/LZWDecode", "/ASCII85Decode", "/ASCIIHexDecode") for n in names):
        return None  # JBIG2 and the like: not without a renderer
    data = obj.get_data()
    bits = int(obj.get("/BitsPerComponent", 8))
    space = obj.get("/ColorSpace")
    space = str(space[0] if isinstance(space, list) else space)
    channels = 3 if space in ("/DeviceRGB", "/CalRGB") else 1 if space in ("/DeviceGray", "/CalGray") else None
    if bits == 1 and channels == 1:
        row = (width + 7) // 8
        # PDF grey 1-bit: 0 is black; PBM: 1 is black. Each row is padded to a byte in both.
        return f"P4\n{width} {height}\n".encode() + bytes(b ^ 0xFF for b in data[: row * height]), ".pbm"
    if bits == 8 and channels:
        magic = "P5" if channels == 1 else "P6"
        return f"{magic}\n{width} {height}\n255\n".encode() + data[: width * height * channels], ".pnm"
    return None


def _ccitt_tiff(data: bytes, width: int, height: int, k: int, black_is_1: bool) -> bytes:
    """CCITT fax data in a one-strip TIFF, the container tesseract (leptonica) reads it from."""
    compression = 4 if k < 0 else 3
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 1), (259, 3, 1, compression),
        (262, 3, 1, 1 if black_is_1 else 0), (273, 4, 1, 0), (278, 4, 1, height), (279, 4, 1, len(data)),
    ]  # fmt: skip
    header_size = 8 + 2 + len(entries) * 12 + 4
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = header_size if tag == 273 else value
        packed = struct.pack("<HHI", tag, kind, count) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )
        out += packed
    return out + struct.pack("<I", 0) + data


def ocr_image(exe: str, image: bytes, suffix: str, language: str = "eng") -> str:
    """Text of one page image (cached by the image's hash); raises OSError or subprocess errors on failure."""
    key = hashlib.sha256(image + language.encode()).hexdigest()
    cached = cache_root() / "ocr" / key[:2] / f"{key}.txt"
    try:
        return cached.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    with tempfile.TemporaryDirectory(prefix="deepkb-ocr-") as tmp:
        src = Path(tmp) / f"page{suffix}"
        src.write_bytes(image)
        done = subprocess.run(
            [exe, str(src), "stdout", "-l", language, "--oem", OCR_ENGINE_MODE, "--psm", "3"],
            capture_output=True, timeout=OCR_TIMEOUT_S, env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )  # fmt: skip
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OSError(f"tesseract failed ({reason[-1] if reason else f'exit status {done.returncode}'})")
    text = done.stdout.decode("utf-8", "replace")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp_file = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp_file.write_text(text, encoding="utf-8")
        os.replace(tmp_file, cached)
    except OSError:  # a read-only cache only costs the next run the OCR again
        pass
    return text


def ocr_pages(doc, pages: list, on_page: OCRProgress | None = None) -> None:
    """OCR the document's pages that have no text layer (doc.empty_pages), in place: their lines become units,
    numbered as lines of the OCR text; a page that cannot be OCR'd stays in empty_pages or goes to failed_pages."""
    from deepkb.loaders.base import Unit

    exe = tesseract()
    if exe is None or not doc.empty_pages:
        return
    doc.encoding = OCR_ENCODING  # recorded: this PDF's pages without text were given to OCR (deepkb.ingest.sync)
    todo = list(doc.empty_pages)
    added: list[Unit] = []
    for done, number in enumerate(todo, start=1):
        try:
            found = page_image(pages[number - 1])
            if found is None:
                continue
            text = ocr_image(exe, *found)
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as exc:
            doc.failed_pages[number] = f"OCR: {exc}"
            doc.empty_pages.remove(number)
            continue
        finally:
            if on_page:
                on_page(done, len(todo))
        lines = [(i, line.strip()) for i, line in enumerate(text.replace("\f", "").split("\n"), 1) if line.strip()]
        if not lines:
            continue
        heading = doc.title
        added += [Unit(line, i, i, number, heading) for i, line in lines]
        doc.empty_pages.remove(number)
        doc.ocr_pages.append(number)
    if added:
        doc.units = sorted(doc.units + added, key=lambda u: u.page or 0)  # stable: each page's lines keep their order


def ocr_page_lines(page) -> list[tuple[int, str]] | None:
    """An OCR'd page's lines as ingest numbered them, from the cache (for excerpts); None when not cached or no OCR."""
    exe = tesseract()
    found = page_image(page) if exe else None
    if found is None:
        return None
    key = hashlib.sha256(found[0] + b"eng").hexdigest()
    try:
        text = (cache_root() / "ocr" / key[:2] / f"{key}.txt").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return [(i, line.strip()) for i, line in enumerate(text.replace("\f", "").split("\n"), 1) if line.strip()]
