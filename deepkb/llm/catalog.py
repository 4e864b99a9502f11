"""Answer models: the DeepSeek GGUF catalog, where models live, download (with resume), listing and removal."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from deepkb.checksum import file_sha256
from deepkb.errors import ModelDownloadError, ModelNotFoundError, UsageError
from deepkb.paths import models_dir


@dataclass(frozen=True)
class CatalogEntry:
    """A GGUF we know how to fetch from the Hugging Face Hub, pinned to one commit and the file's SHA-256.

    `revision` names the repository commit to download from (never a moving branch once pinned); `sha256` is what
    the downloaded bytes must hash to, checked after every download. An entry whose pin is not known yet
    (sha256 None) is checked against the Hub's own SHA-256 (the ETag of an LFS file), and pull says so."""

    name: str
    repo_id: str
    filename: str
    approx_bytes: int
    description: str
    revision: str = "main"
    sha256: str | None = None

    def url(self, endpoint: str | None = None) -> str:
        """Where the file can be downloaded by hand (at the pinned revision)."""
        base = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        return f"{base}/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    @property
    def pinned(self) -> bool:
        return bool(self.sha256) and re.fullmatch(r"[0-9a-f]{40}", self.revision) is not None


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in [
        CatalogEntry(
            "deepseek-r1-1.5b",
            "bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF",
            "DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf",
            1_120_000_000,
            "DeepSeek-R1 distilled into Qwen2.5 1.5B; fast on any laptop CPU",
        ),
        CatalogEntry(
            "deepseek-r1-7b",
            "bartowski/DeepSeek-R1-Distill-Qwen-7B-GGUF",
            "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf",
            4_680_000_000,
            "DeepSeek-R1 distilled into Qwen2.5 7B; better answers, wants 8 GB RAM or a GPU",
        ),
        CatalogEntry(
            "deepseek-r1-8b",
            "bartowski/DeepSeek-R1-Distill-Llama-8B-GGUF",
            "DeepSeek-R1-Distill-Llama-8B-Q4_K_M.gguf",
            4_920_000_000,
            "DeepSeek-R1 distilled into Llama 3.1 8B",
        ),
        CatalogEntry(
            "deepseek-r1-14b",
            "bartowski/DeepSeek-R1-Distill-Qwen-14B-GGUF",
            "DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf",
            8_990_000_000,
            "DeepSeek-R1 distilled into Qwen2.5 14B; wants 16 GB RAM or a GPU",
        ),
    ]
}
DEFAULT_MODEL = "deepseek-r1-1.5b"
PARTIAL_SUFFIX = ".incomplete"


@dataclass(frozen=True)
class ModelInfo:
    """One row of `deepkb models list`: a catalog entry and/or a GGUF found in the models folder."""

    name: str  # catalog name, or the file name for GGUFs outside the catalog
    filename: str
    path: Path | None  # set when downloaded
    size_bytes: int  # on disk when downloaded, else the catalog's approximate size
    is_default: bool
    partial_bytes: int = 0  # bytes of an interrupted download waiting to be resumed

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "filename": self.filename,
            "path": str(self.path) if self.path else None,
            "downloaded": self.path is not None,
            "size_bytes": self.size_bytes,
            "default": self.is_default,
            "partial_bytes": self.partial_bytes,
        }


def catalog_entry(name_or_file: str) -> CatalogEntry | None:
    """The catalog entry for a catalog name or a catalog file name."""
    return CATALOG.get(name_or_file) or next((e for e in CATALOG.values() if e.filename == name_or_file), None)


def list_models(directory: Path | None = None) -> list[ModelInfo]:
    """The catalog plus every other GGUF in the models folder, with what is on disk."""
    directory = directory or models_dir()
    rows: list[ModelInfo] = []
    for entry in CATALOG.values():
        path = directory / entry.filename
        partial = directory / (entry.filename + PARTIAL_SUFFIX)
        rows.append(
            ModelInfo(
                name=entry.name,
                filename=entry.filename,
                path=path if path.is_file() else None,
                size_bytes=path.stat().st_size if path.is_file() else entry.approx_bytes,
                is_default=entry.name == DEFAULT_MODEL,
                partial_bytes=partial.stat().st_size if partial.is_file() else 0,
            )
        )
    known = {e.filename for e in CATALOG.values()}
    for path in sorted(directory.glob("*.gguf")) if directory.is_dir() else []:
        if path.name not in known:
            rows.append(ModelInfo(path.name, path.name, path, path.stat().st_size, False))
    return rows


def pull(name: str = DEFAULT_MODEL, directory: Path | None = None, progress: bool = True) -> Path:
    """Download a catalog model into the models folder, resuming an interrupted download."""
    entry = catalog_entry(name)
    if entry is None:
        raise UsageError(f"unknown model {name!r}; valid: {', '.join(CATALOG)}.")
    directory = directory or models_dir()
    target = directory / entry.filename
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    try:
        _download(entry, target, endpoint, progress)
    except ModelDownloadError:
        raise
    except Exception as exc:  # network and hub failures come in many types; all mean "get it by hand"
        raise ModelDownloadError(
            f"Could not download {entry.filename} ({_reason(exc, endpoint)}); get it from {entry.url(endpoint)} "
            f"and put it in {directory}."
        ) from exc
    return target


def _download(entry: CatalogEntry, target: Path, endpoint: str, progress: bool) -> None:
    """Fetch the file at its pinned revision into a partial file (resumed with Range), then check its SHA-256."""
    import huggingface_hub.constants
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ModelDownloadError(
            f"Could not download {entry.filename} (HF_HUB_OFFLINE is set); get it from {entry.url(endpoint)} and "
            f"put it in {target.parent}."
        )
    url = hf_hub_url(entry.repo_id, entry.filename, revision=entry.revision, endpoint=endpoint)
    expected, size = entry.sha256, None
    if not entry.pinned:  # no pin in this deepkb yet: the Hub's own SHA-256 of the file is what we can check
        meta = get_hf_file_metadata(url)
        size = meta.size
        expected = meta.etag if meta.etag and re.fullmatch(r"[0-9a-f]{64}", meta.etag) else None
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    with partial.open("ab") as out:
        if size is not None and out.tell() > size:
            out.truncate(0)
        _fetch(url, out, entry.filename, progress)
    if expected is None:
        partial.unlink()
        raise ModelDownloadError(
            f"The Hub gave no SHA-256 for {entry.filename} and this deepkb pins none, so the download cannot be "
            f"checked and has been deleted; get it from {entry.url(endpoint)} and put it in {target.parent}."
        )
    if file_sha256(partial) != expected:
        partial.unlink()
        what = "the SHA-256 deepkb pins for it" if entry.pinned else "the SHA-256 the Hub gives for it"
        raise ModelDownloadError(
            f"The download of {entry.filename} does not match {what} (checksum mismatch: corrupted or tampered "
            "with) and has been deleted; run `deepkb models pull` again."
        )
    partial.replace(target)


def _fetch(url: str, out, filename: str, progress: bool, attempts: int = 5) -> None:
    """GET url into the open (append-mode) file, resuming from its end, again after a dropped connection."""
    import httpx
    from huggingface_hub.utils import build_hf_headers
    from tqdm.auto import tqdm

    with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0)) as client:
        while True:
            done = out.tell()
            headers = {**build_hf_headers(), **({"Range": f"bytes={done}-"} if done else {})}
            try:
                with client.stream("GET", url, headers=headers) as response:
                    if response.status_code == 416 and done:  # the partial file is already whole
                        return
                    response.raise_for_status()
                    if done and response.status_code == 200:  # the server sent it all again, not the rest
                        out.truncate(0)
                        done = 0
                    total = int(response.headers.get("Content-Length", 0)) + done or None
                    with tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=filename,
                              disable=not progress) as bar:  # fmt: skip
                        for block in response.iter_bytes(1 << 20):
                            out.write(block)
                            bar.update(len(block))
                out.flush()
                return
            except httpx.TransportError:
                out.flush()
                attempts -= 1
                if attempts <= 0 or out.tell() == done:  # no progress: the network is down, not flaky
                    raise


def _reason(exc: BaseException, endpoint: str) -> str:
    """A short cause for the one-sentence download error."""
    host = urlsplit(endpoint).netloc or endpoint
    name = type(exc).__name__
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if name == "OfflineModeIsEnabled":
        return "HF_HUB_OFFLINE is set"
    if status is not None:
        return f"HTTP {status} from {host}"
    if "Timeout" in name:
        return f"{host} did not answer in time"
    if "Connect" in name or isinstance(exc, OSError):
        return f"no connection to {host}"
    text = str(exc).splitlines()[0] if str(exc) else name
    return text[:160].rstrip(" .")


def remove(name: str, directory: Path | None = None) -> list[Path]:
    """Delete a downloaded model (catalog name or file name) and any partial download of it."""
    directory = directory or models_dir()
    entry = catalog_entry(name)
    filename = entry.filename if entry else Path(name).name
    paths = [p for p in (directory / filename, directory / (filename + PARTIAL_SUFFIX)) if p.is_file()]
    if not paths:
        raise ModelNotFoundError(f"{filename} is not in {directory}; `deepkb models list` shows what is there.")
    for path in paths:
        path.unlink()
    return paths


def resolve_model(model: str | os.PathLike | None = None, directory: Path | None = None) -> Path:
    """The GGUF to answer with: explicit path or catalog name > DEEPKB_MODEL > default (or any pulled) model."""
    directory = directory or models_dir()
    chosen = model or os.environ.get("DEEPKB_MODEL")
    if chosen:
        entry = catalog_entry(str(chosen))
        path = directory / entry.filename if entry else Path(chosen).expanduser()
        if not path.is_file():
            hint = f"run `deepkb models pull {entry.name}`" if entry else "pass an existing .gguf file"
            raise ModelNotFoundError(f"Model file {path} does not exist; {hint}.")
        return path.resolve()
    ordered = [CATALOG[DEFAULT_MODEL]] + [e for e in CATALOG.values() if e.name != DEFAULT_MODEL]
    for entry in ordered:
        if (directory / entry.filename).is_file():
            return directory / entry.filename
    raise ModelNotFoundError(
        f"No answer model in {directory}; run `deepkb models pull` "
        f"(or pass --model PATH / set DEEPKB_MODEL to a GGUF file)."
    )
