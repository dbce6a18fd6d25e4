"""``streamer profiles`` (list, remove, rename) and the command line as a whole."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

import streamer.cli.profiles
from streamer.cli import build_parser, main
from streamer.errors import AudioError
from streamer.profiles import Profile, ProfileStore


@pytest.fixture
def store(tmp_path) -> ProfileStore:
    """Two profiles with made-up vectors (no model needed)."""
    store = ProfileStore(tmp_path / "profiles")
    for name, speech_s in (("alice", 6.0), ("bob smith", 12.0)):
        store.save(Profile(name, "ge2e", np.ones(4), count=3, speech_s=speech_s))
    return store


def test_list_shows_a_table(cli, store):
    result = cli("profiles", "--profiles", store.path)
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert lines[0] == f"profiles in {store.path}"
    assert lines[1].split() == [
        "name",
        "speech",
        "s",
        "model",
        "created",
        "(UTC)",
        "updated",
        "(UTC)",
    ]
    rows = {line.split("  ")[0]: line.split() for line in lines[3:]}
    assert set(rows) == {"alice", "bob smith"}
    assert rows["alice"][1:3] == ["6.0", "ge2e"]
    assert rows["bob smith"][2:4] == ["12.0", "ge2e"]
    assert cli("profiles", "list", "--profiles", store.path).out == result.out


def test_an_empty_store(cli, tmp_path):
    result = cli("profiles", "--profiles", tmp_path / "nothing")
    assert result.code == 0
    assert result.out == f"no profiles in {tmp_path / 'nothing'}\n"


def test_the_default_store_comes_from_the_environment(cli, store, monkeypatch):
    monkeypatch.setenv("STREAMER_PROFILES", str(store.path))
    assert "alice" in cli("profiles").out


def test_a_damaged_profile_is_listed_and_named_on_stderr(cli, store):
    (store.path / "zed.json").write_text("{broken")
    result = cli("profiles", "--profiles", store.path)
    assert result.code == 0
    assert any(line.split() == ["zed", "unreadable"] for line in result.out.splitlines())
    assert result.err.startswith("streamer: warning: profile file") and "zed.json" in result.err


def test_remove(cli, store):
    result = cli("profiles", "remove", "alice", "--profiles", store.path)
    assert result.code == 0
    assert result.out == f"removed profile 'alice' from {store.path}\n"
    assert store.names() == ["bob smith"]


def test_rename(cli, store):
    result = cli("profiles", "--profiles", store.path, "rename", "alice", "carol")
    assert result.code == 0, result.err
    assert store.names() == ["bob smith", "carol"]
    assert json.loads((store.path / "carol.json").read_text())["name"] == "carol"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["remove", "nobody"], "no profile named 'nobody'"),
        (["remove", "../x"], "invalid profile name"),
        (["remove", "a/b"], "invalid profile name"),
        (["rename", "nobody", "x"], "no profile named 'nobody'"),
        (["rename", "alice", "../x"], "invalid profile name"),
        (["rename", "alice", "a/b"], "invalid profile name"),
        (["rename", "alice", "bob smith"], "exists already"),
        (["rename", "alice", "alice"], "has that name already"),
    ],
)
def test_bad_names(cli, store, args, message):
    result = cli("profiles", *args, "--profiles", store.path)
    assert message in result.error
    assert store.names() == ["alice", "bob smith"]


def test_a_store_that_is_a_file(cli, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is not a folder" in cli("profiles", "--profiles", a_file).error
    assert "is not a folder" in cli("profiles", "remove", "x", "--profiles", a_file).error


# The command line as a whole


def test_version_and_help(cli):
    result = cli("--version")
    assert result.code == 0 and result.out.startswith("streamer ")
    result = cli("--help")
    assert result.code == 0
    for command in ("track", "enroll", "profiles", "simulate"):
        assert command in result.out


def subcommands(parser: argparse.ArgumentParser):
    """Every (sub)command's parser under ``parser``, with its name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield name, child
                yield from subcommands(child)


def test_every_help_is_plain_text_and_says_what_each_argument_is():
    for name, parser in subcommands(build_parser()):
        text = parser.format_help()
        assert "``" not in text, (name, text)  # docstring markup
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (name, action.dest)


def test_help_is_quick_it_loads_no_model_code():
    code = (
        "import sys\n"
        "from streamer.cli import main\n"
        "for command in ('track', 'enroll', 'serve', 'demo', 'simulate', 'profiles'):\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip() == "False", done.stderr


def test_the_catalog_names_what_the_models_module_has():
    from streamer.catalog import BACKENDS, MODEL_NAMES
    from streamer.models import MODELS
    from streamer.models.backends import choose_backend

    assert tuple(MODELS) == MODEL_NAMES
    assert choose_backend("torch", None) == "torch" and "mlx" in BACKENDS


def test_usage_errors_exit_2(cli):
    assert cli().code == 2
    assert cli("frobnicate").code == 2
    assert cli("profiles", "remove").code == 2


def test_errors_are_one_line_even_when_the_message_is_not(cli, monkeypatch):
    def fail(args):
        raise AudioError("first line\nsecond line")

    monkeypatch.setattr(streamer.cli.profiles, "run", fail)
    assert cli("profiles").error == "first line second line"


def test_ctrl_c_exits_130_quietly(cli, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(streamer.cli.profiles, "run", interrupted)
    result = cli("profiles")
    assert (result.code, result.out, result.err) == (130, "", "")


def test_bugs_keep_their_traceback(monkeypatch):
    def broken(args):
        raise ZeroDivisionError

    monkeypatch.setattr(streamer.cli.profiles, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["profiles"])
