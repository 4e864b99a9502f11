"""The shells' commands as a user first meets them: `deepkb chat`, `chats`, `doctor` and `serve` are there, say
how to use them, and refuse what they cannot do in one line (their full behaviour: test_tui, test_conversation_store,
test_doctor, test_server)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deepkb.cli import main
from deepkb.cli.chat import chat
from deepkb.cli.chats import chats
from deepkb.cli.doctor import doctor
from deepkb.cli.serve import serve


def test_the_shell_commands_are_registered_with_examples():
    for name, command in (("chat", chat), ("chats", chats), ("doctor", doctor), ("serve", serve)):
        assert main.commands[name] is command
        shown = CliRunner().invoke(main, [name, "--help"])
        assert shown.exit_code == 0 and "Example" in shown.output and f"deepkb {name}" in shown.output, name
    served = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "127.0.0.1" in served and "8000" in served and "--api-key" in served  # loopback by default


def test_doctor_on_a_folder_without_a_knowledge_base_says_to_ingest_first(kb_home):
    for args in (["doctor", "--json"], ["doctor"]):
        out = CliRunner().invoke(main, ["--kb", str(kb_home), *args])
        assert out.exit_code == 1 and f"no knowledge base at {kb_home}" in out.output, out.output
        assert "deepkb ingest" in out.output and "Traceback" not in out.output
    assert not kb_home.exists()  # a mistyped --kb is not created


def test_doctor_on_a_new_knowledge_base_checks_the_disk(kb_home):
    from deepkb.kb import KnowledgeBase

    KnowledgeBase.open(kb_home).close()  # created, nothing ingested yet
    report = json.loads(CliRunner().invoke(main, ["--kb", str(kb_home), "doctor", "--json"]).output)
    found = {f["check"]: f for f in report["findings"]}
    assert found["database"]["status"] == "ok" and found["disk"]["status"] == "ok"
    assert "fail" not in {f["status"] for f in report["findings"]}, report


def test_serve_refuses_an_unusable_port_in_one_line(kb_home):
    result = CliRunner().invoke(main, ["--kb", str(kb_home), "serve", "--port", "70000", "--retrieval-only"])
    assert result.exit_code == 2 and "70000" in result.output and "Traceback" not in result.output
