"""AgentSettings.from_env: the SNAPSYNC_* mapping `snapsync agent` uses, read by an embedder alike.

Every variable `snapsync agent --help` documents is read; each changes the setting it names; a bad
value is one InputError naming the flag, the variable and the value (never the secret); flags
given to the CLI win over the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from snapsync.agent import settings as s
from snapsync.agent.settings import VARIABLES, AgentSettings, Variable
from snapsync.cli import cli
from snapsync.errors import InputError, SnapsyncError
from snapsync.protocol import AgentConfig

SECRET = "an agent secret of length"
REQUIRED = {
    "SNAPSYNC_SERVER_URL": "https://fleet.example.com",
    "SNAPSYNC_EDGE_ID": "shop-17",
    "SNAPSYNC_AGENT_SECRET": SECRET,
}


def _settings(**env: str) -> AgentSettings:
    return AgentSettings.from_env({**REQUIRED, **env})


# What one good, non-default value of each variable must change in the settings.
EFFECTS: dict[Variable, tuple[str, Callable[[AgentSettings], Any], Any]] = {
    s.SERVER_URL: ("http://127.0.0.1:8480", lambda a: a.server_url, "http://127.0.0.1:8480"),
    s.EDGE_ID: ("site-9", lambda a: (a.edge_id, a.state_dir.name), ("site-9", "site-9")),
    s.AGENT_SECRET: ("x" * 32, lambda a: a.secret, b"x" * 32),
    s.INSECURE_POLL: ("yes", lambda a: a.insecure_poll, True),
    s.PING_INTERVAL: ("300", lambda a: a.config.intervals.ping, 300.0),
    s.SNAPSHOT_INTERVAL: ("1.5", lambda a: a.config.intervals.snapshot, 1.5),
    s.COMMAND_INTERVAL: ("2e1", lambda a: a.config.intervals.command, 20.0),
    s.BUDGET: ("500MB", lambda a: a.config.budget.limit, 500_000_000),
    s.BUDGET_PERIOD: ("day", lambda a: a.config.budget.period, "day"),
    s.BUDGET_POLICY: ("fixed", lambda a: a.config.budget.policy, "fixed"),
    s.BUDGET_BURST: ("2MB", lambda a: a.config.budget.burst, 2_000_000),
    s.UPLOAD_INTERVAL_FLOOR: ("0", lambda a: a.config.budget.interval_floor, 0.0),
    s.UPLOAD_INTERVAL_CEILING: ("3600", lambda a: a.config.budget.interval_ceiling, 3600.0),
    s.STATE_DIR: ("/var/lib/snapsync", lambda a: a.state_dir, Path("/var/lib/snapsync")),
    s.PROFILE: ("minimal", lambda a: a.profile.name, "minimal"),
    s.COLLECT: ("list", lambda a: a.collect, "list"),
    s.ALLOW_COMMANDS: ("on", lambda a: a.allow_commands, True),
    s.COMMAND_NAMESPACES: (" shop, ,web ", lambda a: a.command_namespaces, {"shop", "web"}),
    s.HEALTH_FILE: ("/tmp/beat", lambda a: a.health_file, Path("/tmp/beat")),
    s.KUBECONFIG: ("/etc/kube.conf", lambda a: a.kubeconfig, "/etc/kube.conf"),
    s.IN_CLUSTER: ("1", lambda a: a.in_cluster, True),
}

BAD: list[tuple[Variable, str, str]] = [
    (s.SERVER_URL, "ftp://x", "must start with http:// or https://"),
    (s.INSECURE_POLL, "maybe", "is not on or off"),
    (s.PING_INTERVAL, "abc", "is not a positive number of seconds"),
    (s.PING_INTERVAL, "0", "is not a positive number of seconds"),
    (s.SNAPSHOT_INTERVAL, "-5", "is not a positive number of seconds"),
    (s.COMMAND_INTERVAL, "nan", "is not a positive number of seconds"),
    (s.COMMAND_INTERVAL, "inf", "is not a positive number of seconds"),
    (s.BUDGET, "5XB", "expected a number with an optional unit"),
    (s.BUDGET, "-1MB", "is not a number of bytes"),
    (s.BUDGET_PERIOD, "week", "is not day, month or a positive number of seconds"),
    (s.BUDGET_PERIOD, "-60", "is not day, month or a positive number of seconds"),
    (s.BUDGET_POLICY, "greedy", "is not one of fixed, paced"),
    (s.BUDGET_BURST, "-5kB", "is not a positive size"),
    (s.BUDGET_BURST, "0", "is not a positive size"),
    (s.BUDGET_BURST, "lots", "expected a number with an optional unit"),
    (s.UPLOAD_INTERVAL_FLOOR, "-1", "is not zero or a positive number of seconds"),
    (s.UPLOAD_INTERVAL_FLOOR, "nan", "is not zero or a positive number of seconds"),
    (s.UPLOAD_INTERVAL_CEILING, "0", "is not a positive number of seconds"),
    (s.PROFILE, "no-such-profile", "not a file nor a built-in"),
    (s.COLLECT, "often", "is not one of watch, list"),
    (s.ALLOW_COMMANDS, "2", "is not on or off"),
    (s.COMMAND_NAMESPACES, "shop,Not_A_Namespace", "'Not_A_Namespace' is not a namespace name"),
    (s.IN_CLUSTER, "sure", "is not on or off"),
]


def _agent_options() -> list[click.Option]:
    return [p for p in cli.commands["agent"].params if isinstance(p, click.Option) and p.envvar]


def test_every_variable_the_agent_help_documents_is_one_from_env_reads() -> None:
    documented = {(max(p.opts, key=len), p.envvar) for p in _agent_options()}
    assert documented == {(v.flag, v.name) for v in VARIABLES}
    assert set(EFFECTS) == set(VARIABLES)
    help_text = CliRunner().invoke(cli, ["agent", "--help"]).output
    for variable in VARIABLES:
        assert variable.name in help_text


def test_the_cli_shows_the_library_defaults() -> None:
    for option in _agent_options():
        variable = next(v for v in VARIABLES if v.name == option.envvar)
        if not option.is_flag and variable.default is not None:
            assert option.default == variable.default, variable.name


def test_unset_variables_give_the_library_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    settings = _settings()
    assert settings.config == AgentConfig()
    assert settings.profile.name == "default"
    assert settings.state_dir == Path.home() / ".local" / "state" / "snapsync" / "shop-17"
    assert _settings(XDG_STATE_HOME="/xdg").state_dir == Path("/xdg/snapsync/shop-17")
    assert (settings.collect, settings.command_namespaces, settings.health_file) == (
        "watch",
        None,
        None,
    )
    assert not (settings.insecure_poll or settings.allow_commands or settings.in_cluster)


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: v.name)
def test_each_variable_changes_its_setting(variable: Variable) -> None:
    value, read, expected = EFFECTS[variable]
    assert read(_settings(**{variable.name: value})) == expected
    assert read(_settings()) != expected


@pytest.mark.parametrize("variable", [v for v in VARIABLES if v.default is not None])
def test_an_empty_variable_counts_as_unset(variable: Variable) -> None:
    assert _settings(**{variable.name: ""}) == _settings()


@pytest.mark.parametrize(
    ("variable", "value", "problem"), BAD, ids=[f"{v.name}={x}" for v, x, _ in BAD]
)
def test_a_bad_value_is_one_line_naming_flag_value_and_variable(
    variable: Variable, value: str, problem: str
) -> None:
    with pytest.raises(SnapsyncError) as caught:
        _settings(**{variable.name: value})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{variable.flag}: ") and message.endswith(f"({variable.name})")
    shown = value.split(",")[-1] if variable == s.COMMAND_NAMESPACES else value  # the bad name
    assert repr(shown) in message
    assert problem in message


# Values fine alone, refused together: one line naming every flag and variable involved.
BAD_TOGETHER: list[tuple[dict[str, str], tuple[Variable, ...], str]] = [
    (
        {"SNAPSYNC_UPLOAD_INTERVAL_FLOOR": "120", "SNAPSYNC_UPLOAD_INTERVAL_CEILING": "60"},
        (s.UPLOAD_INTERVAL_FLOOR, s.UPLOAD_INTERVAL_CEILING),
        "upload interval ceiling (60 s) is below its floor (120 s)",
    ),
    (
        {"SNAPSYNC_BUDGET": "1MB", "SNAPSYNC_BUDGET_BURST": "960kB"},
        (s.BUDGET, s.BUDGET_BURST),
        "budget burst cap (960,000 B) is larger than the budget less its reserve",
    ),
    (
        {"SNAPSYNC_BUDGET": "50kB", "SNAPSYNC_BUDGET_PERIOD": "day"},
        (s.BUDGET, s.BUDGET_PERIOD, s.PING_INTERVAL),
        "does not pay for a ping every 60 s",
    ),
]


@pytest.mark.parametrize(("env", "variables", "problem"), BAD_TOGETHER)
def test_values_refused_together_are_one_line_naming_each(
    env: dict[str, str], variables: tuple[Variable, ...], problem: str, tmp_path: Path
) -> None:
    with pytest.raises(InputError) as caught:
        _settings(**env)
    message = str(caught.value)
    assert "\n" not in message and problem in message
    assert all(v.flag in message and v.name in message for v in variables)
    env = {**REQUIRED, **env}
    result = CliRunner().invoke(cli, ["agent", "--from-file", str(tmp_path / "none")], env=env)
    assert result.exit_code == 2 and result.stderr == f"snapsync: error: {message}\n"


def test_a_ping_every_hour_fits_a_budget_too_small_for_one_a_minute() -> None:
    hourly = _settings(
        SNAPSYNC_BUDGET="50kB", SNAPSYNC_BUDGET_PERIOD="day", SNAPSYNC_PING_INTERVAL="3600"
    )
    assert hourly.config.budget.limit == 50_000


@pytest.mark.parametrize("variable", [s.SERVER_URL, s.EDGE_ID, s.AGENT_SECRET])
def test_a_missing_required_variable_names_flag_and_variable(variable: Variable) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != variable.name}
    with pytest.raises(InputError) as caught:
        AgentSettings.from_env(env)
    assert str(caught.value) == f"missing {variable.flag}: pass the flag or set {variable.name}"


def test_a_short_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(InputError) as caught:
        _settings(SNAPSYNC_AGENT_SECRET="hunter2")
    assert "hunter2" not in str(caught.value)
    assert "SNAPSYNC_AGENT_SECRET" in str(caught.value)
    assert "hunter2" not in repr(_settings(SNAPSYNC_AGENT_SECRET="hunter2" * 4))


@given(variable=st.sampled_from(VARIABLES), value=st.text(st.characters(exclude_characters="\0")))
def test_any_value_is_taken_or_refused_as_an_input_error_naming_the_variable(
    variable: Variable, value: str
) -> None:
    try:
        _settings(**{variable.name: value})
    except SnapsyncError as exc:
        assert variable.name in str(exc) and "\n" not in str(exc)


# -- the CLI goes through from_env: the flags it was given win ---------------------------------


class _Built(SnapsyncError):
    pass


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[AgentSettings]:
    """The settings `snapsync agent` builds its Agent from (then it stops, exit 2)."""
    seen: list[AgentSettings] = []

    def agent(self: AgentSettings, *args: Any, **kwargs: Any) -> Any:
        seen.append(self)
        raise _Built("built")

    monkeypatch.setattr(AgentSettings, "agent", agent)
    return seen


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> None:
    dump = tmp_path / "dump.json"
    dump.write_text('{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}')
    result = CliRunner().invoke(cli, ["agent", "--from-file", str(dump), *args], env=env)
    assert result.stderr == "snapsync: error: built\n", result.output


def test_the_cli_reads_the_environment_through_from_env(
    built: list[AgentSettings], tmp_path: Path
) -> None:
    live = (s.ALLOW_COMMANDS, s.IN_CLUSTER)  # --from-file refuses the one, KUBECONFIG the other
    env = {**REQUIRED, **{v.name: EFFECTS[v][0] for v in VARIABLES if v not in live}}
    _run([], env, tmp_path)
    assert built[-1] == AgentSettings.from_env(env)


def test_flags_win_over_the_environment(built: list[AgentSettings], tmp_path: Path) -> None:
    env = {**REQUIRED, "SNAPSYNC_PING_INTERVAL": "5", "SNAPSYNC_COLLECT": "nonsense"}
    flags = ["--ping-interval", "7", "--collect", "list", "--budget", "1GiB", "--insecure-poll"]
    flags += ["--edge-id", "flagged", "--state-dir", str(tmp_path / "state")]
    _run(flags, env, tmp_path)
    settings = built[-1]
    assert settings.config.intervals.ping == 7.0 and settings.collect == "list"
    assert settings.config.budget.limit == 2**30 and settings.insecure_poll
    assert settings.edge_id == "flagged" and settings.state_dir == tmp_path / "state"


@pytest.mark.parametrize(("variable", "value", "problem"), BAD[:6])
def test_the_cli_refuses_a_bad_variable_with_from_envs_line(
    variable: Variable, value: str, problem: str, tmp_path: Path
) -> None:
    env = {**REQUIRED, variable.name: value}
    with pytest.raises(SnapsyncError) as caught:
        AgentSettings.from_env(env)
    result = CliRunner().invoke(cli, ["agent", "--from-file", str(tmp_path / "none")], env=env)
    assert result.exit_code == 2
    assert result.stderr == f"snapsync: error: {caught.value}\n"


def test_the_pieces_follow_the_settings(tmp_path: Path) -> None:
    """The collector, the command runner and the transport an embedder gets from settings."""
    from snapsync.agent import KubeCommandRunner, refuse_cluster_commands
    from snapsync.collect import KubeCollector, KubeWatchCollector

    env = {"SNAPSYNC_STATE_DIR": str(tmp_path), "KUBECONFIG": "/etc/kube.conf"}
    watching = _settings(**env)
    collector = watching.collector()
    assert isinstance(collector, KubeWatchCollector)
    assert collector.options.kubeconfig == "/etc/kube.conf"
    assert collector.options.discovery_cache_dir == tmp_path / "discovery"
    assert isinstance(_settings(**env, SNAPSYNC_COLLECT="list").collector(), KubeCollector)
    assert watching.command_runner() is refuse_cluster_commands
    runner = _settings(
        SNAPSYNC_ALLOW_COMMANDS="1", SNAPSYNC_COMMAND_NAMESPACES="shop"
    ).command_runner()
    assert isinstance(runner, KubeCommandRunner) and runner.namespaces == {"shop"}
    transport = _settings(SNAPSYNC_INSECURE_POLL="1", SNAPSYNC_PING_INTERVAL="600").transport()
    try:
        assert transport.edge_id == "shop-17" and transport.secret == SECRET.encode()
    finally:
        transport.close()
