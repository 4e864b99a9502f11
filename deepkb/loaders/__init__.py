"""Loaders: a file's bytes become text units that remember their page, lines and heading path.

One module per format; `load` picks by file extension and refuses what it cannot read with a LoadError whose
message is the reason shown beside the file.
"""

from __future__ import annotations

from pathlib import Path

from deepkb.errors import LoadError
from deepkb.loaders.archive import gunzip
from deepkb.loaders.base import LoadedDocument, Unit
from deepkb.loaders.epub import load_epub
from deepkb.loaders.html import load_html
from deepkb.loaders.mail import MAIL_EXT, is_maildir_message, load_mail, looks_like_mbox
from deepkb.loaders.man import MAN_SUFFIX, load_man, looks_like_roff
from deepkb.loaders.ocr import OCRProgress, tesseract
from deepkb.loaders.office import load_docx, load_odt
from deepkb.loaders.pdf import load_pdf
from deepkb.loaders.text import decode_text, load_markdown, load_plain

__all__ = ["OCR_HINT", "LoadedDocument", "Unit", "load", "precheck", "decode_text", "format_of", "reads_own_lines"]

MARKDOWN_EXT = {".md", ".markdown", ".mdx"}
HTML_EXT = {".html", ".htm", ".xhtml"}
PDF_EXT = {".pdf"}
ZIP_FORMATS = {".docx": load_docx, ".odt": load_odt, ".epub": load_epub}
# Known binary formats: reported as unsupported without reading them.
BINARY_EXT = {
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ico", ".heic", ".svgz",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar", ".whl", ".deb", ".rpm",
    ".doc", ".xls", ".xlsx", ".ppt", ".pptx", ".ods", ".odp",
    ".exe", ".dll", ".so", ".dylib", ".o", ".a", ".bin", ".class", ".pyc", ".wasm",
    ".mp3", ".mp4", ".m4a", ".wav", ".flac", ".ogg", ".avi", ".mov", ".mkv", ".webm",
    ".sqlite", ".db", ".gguf", ".safetensors", ".pt", ".npy", ".npz", ".pkl", ".parquet",
    ".ttf", ".otf", ".woff", ".woff2", ".iso", ".dmg",
}  # fmt: skip
OCR_HINT = "install tesseract to OCR it"  # in a failure's reason: such a file is read again once tesseract is there
MAX_TEXT_BYTES = 20 * 1024 * 1024
MAX_PDF_BYTES = 512 * 1024 * 1024
MAX_ZIP_BYTES = 256 * 1024 * 1024  # a .docx, .odt or .epub file (what it holds is limited by deepkb.loaders.archive)
MAX_MAILBOX_BYTES = 256 * 1024 * 1024  # one mbox is read whole: split a bigger one (by year) or use a Maildir
MAX_MAN_GZ_BYTES = 4 * 1024 * 1024
MAX_MAN_BYTES = 4 * 1024 * 1024  # decompressed: bash.1, among the longest, is 0.35 MiB


def format_of(path: Path, head: bytes | None = None) -> str:
    """Which loader reads this file: pdf, docx, odt, epub, mail, mbox, man, man.gz, html, markdown, text or binary.

    `head` (the file's first bytes) tells an mbox without an extension (Thunderbird's `Inbox`) from plain text."""
    name = path.name.lower()
    suffix = path.suffix.lower()
    if suffix in PDF_EXT:
        return "pdf"
    if suffix in ZIP_FORMATS:
        return suffix[1:]
    if suffix == ".eml":
        return "mail"
    if suffix in MAIL_EXT:
        return "mbox"
    if suffix == ".gz":
        return "man.gz" if MAN_SUFFIX.match(Path(name[:-3]).suffix) else "binary"
    if suffix in BINARY_EXT:
        return "binary"
    if MAN_SUFFIX.match(suffix):
        return "man"
    if suffix in HTML_EXT:
        return "html"
    if suffix in MARKDOWN_EXT:
        return "markdown"
    if is_maildir_message(path):  # Maildir names have no extension of their own: 1733.M1P2.host:2,S
        return "mail"
    if not suffix and head is not None and looks_like_mbox(head):
        return "mbox"
    return "text"


def reads_own_lines(path: Path) -> bool:
    """Whether a loader's units hold the file's own lines verbatim (text, Markdown): excerpts read them directly."""
    return format_of(path) in ("text", "markdown")


def _head(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(512)
    except OSError:
        return None


def precheck(path: Path, size: int) -> None:
    """Refuse by name and size alone, before a whole file is read (a 4 GB video is never loaded into memory)."""
    suffix = path.suffix.lower()
    kind = format_of(path, _head(path) if size > MAX_TEXT_BYTES and not suffix else None)
    if kind == "binary":
        raise LoadError(f"unsupported file type ({suffix})")
    if size == 0:
        raise LoadError("empty file")
    limits = {
        "pdf": (MAX_PDF_BYTES, "PDF"), "docx": (MAX_ZIP_BYTES, "Word document"),
        "odt": (MAX_ZIP_BYTES, "OpenDocument text"), "epub": (MAX_ZIP_BYTES, "EPUB"),
        "mbox": (MAX_MAILBOX_BYTES, "mbox mailbox"), "mail": (MAX_TEXT_BYTES * 2, "e-mail message"),
        "man.gz": (MAX_MAN_GZ_BYTES, "compressed man page"),
    }  # fmt: skip
    limit, what = limits.get(kind, (MAX_TEXT_BYTES, "text file"))
    if size > limit:
        advice = "; split it (by year, say) or keep the mail in a Maildir" if kind == "mbox" else ""
        raise LoadError(f"{what} larger than {limit >> 20} MiB{advice}")


def load(path: Path, data: bytes, on_ocr_page: OCRProgress | None = None) -> LoadedDocument:
    """Turn one file's bytes into units; raises LoadError with the reason when it cannot. `on_ocr_page` hears
    (pages done, pages to OCR) while a scanned PDF is OCR'd."""
    precheck(path, len(data))
    suffix = path.suffix.lower()
    kind = format_of(path, data[:512])
    if kind == "pdf":
        doc = load_pdf(data, on_ocr_page)
    elif "." + kind in ZIP_FORMATS:
        doc = ZIP_FORMATS["." + kind](data)
    elif kind in ("mail", "mbox"):
        if b"\x00" in data[:8192]:
            raise LoadError(f"not an e-mail {'mailbox' if kind == 'mbox' else 'message'} (binary data)")
        doc = load_mail(data, mbox=kind == "mbox")
    elif kind in ("man", "man.gz") and (kind == "man.gz" or looks_like_roff(data)):
        raw = gunzip(data, "compressed man page", MAX_MAN_BYTES) if kind == "man.gz" else data
        text, encoding = decode_text(raw)
        doc = load_man(text)
        doc.encoding = encoding
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
        if doc.kind == "pdf" and tesseract() is None:
            raise LoadError(f"no extractable text (a scanned PDF: {OCR_HINT}; see `deepkb doctor`)")
        raise LoadError("no extractable text (OCR found none either)" if doc.kind == "pdf" else "no text")
    return doc
