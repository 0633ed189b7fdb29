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


@pytest.mark.parametrize(("text", "value"), [
    ("512", 512), ("-1", -1), ("100m", 100 << 20), ("1G", 1 << 30), ("1.5k", 1536),
    ("10MB", 10 << 20), ("2mib", 2 << 20),
])
def test_sizes_like_dockers_ram_in_bytes(text, value):
    assert cli.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "x", "10x", "-5m", "m"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(cli.UsageError):
        cli.parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5.0), ("100ms", 0.1), ("1m30s", 90.0),
                                               ("2h", 7200.0)])
def test_go_durations(text, seconds):
    assert cli.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "0s", "s"])
def test_bad_durations_are_refused(text):
    with pytest.raises(cli.UsageError):
        cli.parse_duration(text)


def test_update_flags_become_oci_resources():
    opts: dict = {}
    cli._parse_flags(["--memory", "64m", "--memory-swap", "-1", "--cpu-quota", "20000",
                      "--cpu-period", "100000", "--cpuset-cpus", "0", "--pids-limit", "20",
                      "--blkio-weight", "300", "id"], cli.COMMANDS["update"], opts)
    assert cli._update_resources(opts) == {
        "memory": {"limit": 64 << 20, "swap": -1},
        "cpu": {"quota": 20000, "period": 100000, "cpus": "0"},
        "blockIO": {"weight": 300},
        "pids": {"limit": 20},
    }


def test_update_resources_from_a_file(tmp_path):
    f = tmp_path / "r.json"
    f.write_text('{"pids": {"limit": 7}}')
    assert cli._update_resources({"resources": str(f)}) == {"pids": {"limit": 7}}
    f.write_text("[1]")
    with pytest.raises(cli.UsageError):
        cli._update_resources({"resources": str(f)})


def test_update_without_anything_to_change_is_a_usage_error():
    with pytest.raises(cli.UsageError):
        cli._update_resources({})


def test_exec_env_and_cap_flags_accumulate():
    opts: dict = {}
    rest = cli._parse_flags(["-e", "A=1", "--env", "B=2", "--cap", "CAP_SYS_ADMIN", "-t",
                             "cid", "sh"], cli.COMMANDS["exec"], opts)
    assert opts == {"env": ["A=1", "B=2"], "cap": ["CAP_SYS_ADMIN"], "tty": True}
    assert rest == ["cid", "sh"]
