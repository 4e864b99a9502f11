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

__all__ = ["LoadedDocument", "Unit", "load", "precheck", "decode_text"]

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


def precheck(path: Path, size: int) -> None:
    """Refuse by name and size alone, before a byte is read (a 4 GB video is never loaded into memory)."""
    suffix = path.suffix.lower()
    if suffix in BINARY_EXT:
        raise LoadError(f"unsupported file type ({suffix})")
    if size == 0:
        raise LoadError("empty file")
    limit = MAX_PDF_BYTES if suffix in PDF_EXT else MAX_TEXT_BYTES
    if size > limit:
        raise LoadError(f"{'PDF' if suffix in PDF_EXT else 'text file'} larger than {limit >> 20} MiB")


def load(path: Path, data: bytes) -> LoadedDocument:
    """Turn one file's bytes into units; raises LoadError with the reason when it cannot."""
    precheck(path, len(data))
    suffix = path.suffix.lower()
    if suffix in PDF_EXT:
        doc = load_pdf(data)
    else:
        text, encoding = decode_text(data)
        if suffix in HTML_EXT:
            doc = load_html(text)
        elif suffix in MARKDOWN_EXT:
            doc = load_markdown(text)
        else:
            doc = load_plain(text, path.name)
        doc.encoding = encoding
    if not any(u.text.strip() for u in doc.units):
        if doc.failed_pages:
            raise LoadError(f"unreadable PDF: {doc.failure_note()}")
        raise LoadError("no extractable text (a scanned PDF needs OCR first)" if doc.kind == "pdf" else "no text")
    return doc
