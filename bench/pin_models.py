"""Print the pin (repository commit and SHA-256) of every answer-model catalog entry, for deepkb/models.py.

Run where the Hugging Face Hub is reachable (this project's build machines cannot reach it):

    .venv/bin/python bench/pin_models.py

For each entry it asks the Hub (HF_ENDPOINT honoured) for the file's metadata on `main`: the commit it resolves
to and the SHA-256 of the LFS file (its ETag). Paste the printed `revision=..., sha256=...` into the entry; from
then on `deepkb models pull` downloads that commit only and refuses any other bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    from deepkb.llm.catalog import CATALOG

    for entry in CATALOG.values():
        meta = get_hf_file_metadata(hf_hub_url(entry.repo_id, entry.filename, revision="main"))
        print(f"{entry.name}: revision={meta.commit_hash!r}, sha256={meta.etag!r}  # {meta.size} bytes")


if __name__ == "__main__":
    main()
