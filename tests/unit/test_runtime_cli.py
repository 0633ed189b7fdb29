"""hutch-runtime's command line: runc's flags, signals and error handling (no root)."""

from __future__ import annotations

import pytest

from hutch.runtime import cli

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "number"),
    [("KILL", 9), ("SIGKILL", 9), ("9", 9), ("term", 15), ("SIGHUP", 1), ("USR1", 10),
     ("RTMIN+1", 35), ("SIGRTMAX-1", 63)],
)
def test_signals_by_name_with_or_without_sig_and_by_number(text, number):
    assert cli.parse_signal(text) == number


@pytest.mark.parametrize("text", ["FOO", "SIG_DFL", "SIG_IGN", "0", "65", "-1", ""])
def test_unknown_signals_are_refused(text):
    with pytest.raises(cli.UsageError):
        cli.parse_signal(text)


def test_flags_take_values_in_both_forms_and_stop_at_the_first_argument():
    opts: dict = {}
    rest = cli._parse_flags(["--bundle", "/b", "--pid-file=/p", "-no-pivot", "id1", "--x"],
                            cli.COMMANDS["create"], opts)
    assert opts == {"bundle": "/b", "pid_file": "/p", "no_pivot": True}
    assert rest == ["id1", "--x"]


def test_unknown_flag_is_a_usage_error_like_runc():
    with pytest.raises(cli.UsageError, match="flag provided but not defined: -bogus"):
        cli._parse_flags(["--bogus", "x"], cli.COMMANDS["start"], {})


def test_flag_without_its_value_is_a_usage_error():
    with pytest.raises(cli.UsageError, match="needs an argument"):
        cli._parse_flags(["--bundle"], cli.COMMANDS["create"], {})


def test_missing_container_gives_one_line_and_non_zero_exit(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "state", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "container does not exist: nope"


def test_errors_go_to_the_log_file_as_json_lines(tmp_path, capsys):
    import json

    log = tmp_path / "log.json"
    assert cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json",
                     "delete", "nope"]) == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error"
    assert entry["msg"] == "container does not exist: nope"
    assert "time" in entry


def test_hostile_container_ids_are_refused_before_touching_the_root(tmp_path, capsys):
    for bad in ["../x", "a/b", "x" * 2000, ".."]:
        assert cli.main(["--root", str(tmp_path / "r"), "state", bad]) == 1
    assert not (tmp_path / "r").exists()


def test_version_names_the_spec_version(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert "hutch-runtime version" in out and "spec: 1.0.2" in out


def test_spec_writes_runcs_default_config(tmp_path):
    import json

    from hutch.oci.spec import default_spec

    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "config.json").read_text()) == default_spec()
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 1  # refuses to overwrite


def test_features_lists_hooks_namespaces_and_seccomp(capsys):
    import json

    assert cli.main(["features"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert "createContainer" in f["hooks"]
    assert "user" in f["linux"]["namespaces"]
    assert f["linux"]["seccomp"]["enabled"] is True


def test_list_of_an_empty_root_is_an_empty_json_array(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "list", "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
