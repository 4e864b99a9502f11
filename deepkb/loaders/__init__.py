"""Loaders: a file's bytes become text units that remember their page, lines and heading path.

One module per format; `load` picks by file extension and refuses what it cannot read with a LoadError whose
message is the reason shown beside the file.
"""

from __future__ import annotations

from pathlib import Path

from deepkb.errors import LoadError
from deepkb.loaders.base import LoadedDocument, Unit
from deepkb.loaders.html import load_html
from deepkb.loaders.pdf import load_pdf
from deepkb.loaders.text import decode_text, load_markdown, load_plain

__all__ = ["LoadedDocument", "Unit", "load", "decode_text"]

MARKDOWN_EXT = {".md", ".markdown", ".mdx"}
HTML_EXT = {".html", ".htm", ".xhtml"}
PDF_EXT = {".pdf"}
# Known binary formats: reported as unsupported without reading them.
BINARY_EXT = {
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ico", ".heic", ".svgz",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar", ".whl", ".deb", ".rpm",
    ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".ods", ".odp", ".epub",
    ".exe", ".dll", ".so", ".dylib", ".o", ".a", ".bin", ".class", ".pyc", ".wasm",
    ".mp3", ".mp4", ".m4a", ".wav", ".flac", ".ogg", ".avi", ".mov", ".mkv", ".webm",
    ".sqlite", ".db", ".gguf", ".safetensors", ".pt", ".npy", ".npz", ".pkl", ".parquet",
    ".ttf", ".otf", ".woff", ".woff2", ".iso", ".dmg",
}  # fmt: skip
MAX_TEXT_BYTES = 20 * 1024 * 1024
MAX_PDF_BYTES = 512 * 1024 * 1024


def load(path: Path, data: bytes) -> LoadedDocument:
    """Turn one file's bytes into units; raises LoadError with the reason when it cannot."""
    suffix = path.suffix.lower()
    if suffix in BINARY_EXT:
        raise LoadError(f"unsupported file type ({suffix})")
    if not data:
        raise LoadError("empty file")
    if suffix in PDF_EXT:
        if len(data) > MAX_PDF_BYTES:
            raise LoadError(f"PDF larger than {MAX_PDF_BYTES >> 20} MiB")
        doc = load_pdf(data)
    else:
        if len(data) > MAX_TEXT_BYTES:
            raise LoadError(f"text file larger than {MAX_TEXT_BYTES >> 20} MiB")
        text, encoding = decode_text(data)
        if suffix in HTML_EXT:
            doc = load_html(text)
        elif suffix in MARKDOWN_EXT:
            doc = load_markdown(text)
        else:
            doc = load_plain(text)
        doc.encoding = encoding
    if not any(u.text.strip() for u in doc.units):
        raise LoadError("no extractable text (a scanned PDF needs OCR first)" if doc.kind == "pdf" else "no text")
    return doc
