"""The answer model named in config.toml is the one every command talks about: doctor checks it, `models list`
names it, `models --help` says how to choose it. Also: saved conversations' times, and questions written in
another language than the documents."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deepkb.cli import main
from deepkb.conversation.session import ChatSession, ConversationStore

from conftest import write


def _config(home, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text, encoding="utf-8")


def test_doctor_checks_the_model_config_toml_names(kb, tiny_model):
    _config(kb.home, f'model = "{tiny_model}"\n')
    result = CliRunner().invoke(main, ["--kb", str(kb.home), "doctor", "--json"])
    found = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    answer = found["answer model"]
    assert answer["status"] == "ok" and answer["data"]["path"] == str(tiny_model)


def test_models_list_names_the_model_in_use_and_help_says_how_to_choose(kb, tiny_model):
    runner = CliRunner()
    default = json.loads(runner.invoke(main, ["--kb", str(kb.home), "models", "list", "--json"]).stdout)
    assert default["configured"]["source"] == "the default"
    _config(kb.home, f'model = "{tiny_model}"\n')
    shown = runner.invoke(main, ["--kb", str(kb.home), "models", "list"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "answer model in use" in shown.output
    assert tiny_model.name in shown.output.replace("\n", "") and "config.toml" in shown.output
    listed = json.loads(runner.invoke(main, ["--kb", str(kb.home), "models", "list", "--json"]).stdout)
    assert listed["configured"]["model"] == str(tiny_model)
    helped = runner.invoke(main, ["models", "--help"]).output
    assert "--model" in helped and "DEEPKB_MODEL" in helped and "config.toml" in helped


def test_a_one_turn_conversation_is_not_updated_before_it_was_created(kb, tmp_path):
    write(tmp_path / "docs" / "b.md", "# Backups\n\nBackups are kept for thirty days in the offsite vault.\n")
    kb.ingest([tmp_path / "docs"])
    session = ChatSession(kb, None)
    session.ask("How long are backups kept?")
    info = ConversationStore(kb.home).list()[0]
    assert info.updated >= info.created


def test_a_question_in_another_script_is_declined_with_the_reason(kb, tmp_path):
    write(tmp_path / "docs" / "log.md", "# git log\n\ncommit 3f2a: fix the merge of the stash branch.\n")
    kb.ingest([tmp_path / "docs"])
    runner = CliRunner()
    data = json.loads(runner.invoke(main, ["--kb", str(kb.home), "ask", "如何创建一个新的分支?", "--json"]).stdout)
    assert data["abstained"] and "CJK" in data["notice"] and "multilingual" in data["notice"]
    assert not data["citations"]
    english = json.loads(
        runner.invoke(main, ["--kb", str(kb.home), "ask", "fix the merge of the stash", "--json"]).stdout
    )
    assert not english["abstained"]  # retrieval only here (no model): the passages come back
    status = json.loads(runner.invoke(main, ["--kb", str(kb.home), "status", "--json"]).stdout)
    assert status["embedding_languages"] == "english"
    shown = runner.invoke(main, ["--kb", str(kb.home), "status"], env={"COLUMNS": "200"}).output
    assert "English only" in shown
