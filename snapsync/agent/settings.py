"""An agent's settings from SNAPSYNC_* variables: the mapping `snapsync agent` uses, for embedders.

`AgentSettings.from_env()` reads every variable `snapsync agent --help` documents, with the same
defaults and checks; the CLI lays the flags it was given over a copy of the environment and
calls it, so flags win and both paths refuse a value alike. An empty variable counts as unset (as
click treats one). A bad value is one InputError naming the flag, the value and the variable;
a secret is never echoed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from snapsync.canonical.profile import Profile, load_profile
from snapsync.errors import InputError, SnapsyncError
from snapsync.protocol import AgentConfig, BudgetConfig, Intervals
from snapsync.protocol.auth import check_secret
from snapsync.protocol.budget import POLICIES, period_start
from snapsync.protocol.commands import OBJECT_NAME
from snapsync.protocol.messages import Ping, Pong, Version
from snapsync.protocol.request import DEFAULT_OVERHEAD
from snapsync.units import parse_size

if TYPE_CHECKING:
    from snapsync.agent.loop import Agent, CommandRunner
    from snapsync.agent.transport import HttpTransport
    from snapsync.collect import Collector, KubeOptions


@dataclass(frozen=True)
class Variable:
    """One setting: its variable, the `snapsync agent` flag that overrides it, and its default
    as the variable would spell it (None: unset)."""

    name: str
    flag: str
    default: str | None = None

    def refuse(self, detail: str) -> InputError:
        return InputError(f"{self.flag}: {detail} ({self.name})")


def refuse_together(variables: tuple[Variable, ...], exc: InputError) -> InputError:
    """A refusal of values that are fine alone but not together (a ceiling below its floor):
    the check's own line, naming every flag and variable involved."""
    flags, names = (", ".join(getattr(v, a) for v in variables) for a in ("flag", "name"))
    return InputError(f"{flags}: {exc} ({names})")


_BUDGET = BudgetConfig()  # the defaults the budget variables spell
SERVER_URL = Variable("SNAPSYNC_SERVER_URL", "--server-url")
EDGE_ID = Variable("SNAPSYNC_EDGE_ID", "--edge-id")
AGENT_SECRET = Variable("SNAPSYNC_AGENT_SECRET", "--agent-secret")
INSECURE_POLL = Variable("SNAPSYNC_INSECURE_POLL", "--insecure-poll", "0")
PING_INTERVAL = Variable("SNAPSYNC_PING_INTERVAL", "--ping-interval", "60.0")
SNAPSHOT_INTERVAL = Variable("SNAPSYNC_SNAPSHOT_INTERVAL", "--snapshot-interval", "60.0")
COMMAND_INTERVAL = Variable("SNAPSYNC_COMMAND_INTERVAL", "--command-interval", "10.0")
BUDGET = Variable("SNAPSYNC_BUDGET", "--budget", "0")
BUDGET_PERIOD = Variable("SNAPSYNC_BUDGET_PERIOD", "--budget-period", "month")
BUDGET_POLICY = Variable("SNAPSYNC_BUDGET_POLICY", "--budget-policy", _BUDGET.policy)
BUDGET_BURST = Variable("SNAPSYNC_BUDGET_BURST", "--budget-burst")
UPLOAD_INTERVAL_FLOOR = Variable(
    "SNAPSYNC_UPLOAD_INTERVAL_FLOOR", "--upload-interval-floor", f"{_BUDGET.interval_floor:g}"
)
UPLOAD_INTERVAL_CEILING = Variable(
    "SNAPSYNC_UPLOAD_INTERVAL_CEILING", "--upload-interval-ceiling", f"{_BUDGET.interval_ceiling:g}"
)
STATE_DIR = Variable("SNAPSYNC_STATE_DIR", "--state-dir")
PROFILE = Variable("SNAPSYNC_PROFILE", "--profile", "default")
COLLECT = Variable("SNAPSYNC_COLLECT", "--collect", "watch")
ALLOW_COMMANDS = Variable("SNAPSYNC_ALLOW_COMMANDS", "--allow-commands", "0")
COMMAND_NAMESPACES = Variable("SNAPSYNC_COMMAND_NAMESPACES", "--command-namespaces", "")
HEALTH_FILE = Variable("SNAPSYNC_HEALTH_FILE", "--health-file")
KUBECONFIG = Variable("KUBECONFIG", "--kubeconfig")
IN_CLUSTER = Variable("SNAPSYNC_IN_CLUSTER", "--in-cluster", "0")

VARIABLES = (
    SERVER_URL,
    EDGE_ID,
    AGENT_SECRET,
    INSECURE_POLL,
    PING_INTERVAL,
    SNAPSHOT_INTERVAL,
    COMMAND_INTERVAL,
    BUDGET,
    BUDGET_PERIOD,
    BUDGET_POLICY,
    BUDGET_BURST,
    UPLOAD_INTERVAL_FLOOR,
    UPLOAD_INTERVAL_CEILING,
    STATE_DIR,
    PROFILE,
    COLLECT,
    ALLOW_COMMANDS,
    COMMAND_NAMESPACES,
    HEALTH_FILE,
    KUBECONFIG,
    IN_CLUSTER,
)
COLLECT_MODES = ("watch", "list")
# What a ping costs at the least, for the check that a budget pays for one every ping interval:
# a ping and the pong of an agent in sync, with an exchange's overhead on a kept-alive connection.
_HELD = (Version(1, bytes(32)),)
PING_COST = (
    len(Ping(have=(bytes(32),), latest=bytes(32)).encode())
    + len(Pong(holds=_HELD).encode())
    + DEFAULT_OVERHEAD
)
# The spellings click accepts for a boolean flag's variable, so both paths agree.
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


@dataclass(frozen=True)
class AgentSettings:
    """What `snapsync agent` runs with, checked; `agent()` builds the same Agent it does."""

    server_url: str
    edge_id: str
    secret: bytes = field(repr=False)
    state_dir: Path
    config: AgentConfig = field(default_factory=AgentConfig)
    profile: Profile = field(default_factory=load_profile)
    insecure_poll: bool = False
    collect: str = "watch"  # watch: list once, then WATCH; list: LIST every cycle
    allow_commands: bool = False
    command_namespaces: frozenset[str] | None = None  # None: any the RBAC allows
    health_file: Path | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentSettings:
        """Every SNAPSYNC_* variable (and KUBECONFIG) of `environ` (default: os.environ)."""
        env = _Environment(os.environ if environ is None else environ)
        server_url, edge_id = env.required(SERVER_URL), env.required(EDGE_ID)
        if not server_url.startswith(("http://", "https://")):
            raise SERVER_URL.refuse(f"{server_url!r} must start with http:// or https://")
        secret = check_secret(
            env.required(AGENT_SECRET), f"{AGENT_SECRET.flag} ({AGENT_SECRET.name})"
        )
        intervals = Intervals(
            ping=env.seconds(PING_INTERVAL),
            snapshot=env.seconds(SNAPSHOT_INTERVAL),
            command=env.seconds(COMMAND_INTERVAL),
        )
        budget = env.budget()
        try:
            budget.check_pings(intervals.ping, PING_COST)
        except InputError as exc:
            raise refuse_together((BUDGET, BUDGET_PERIOD, PING_INTERVAL), exc) from None
        state_dir = env.text(STATE_DIR)
        health_file = env.text(HEALTH_FILE)
        return cls(
            server_url=server_url,
            edge_id=edge_id,
            secret=secret,
            state_dir=Path(state_dir) if state_dir else default_state_dir(edge_id, env.values),
            config=AgentConfig(intervals=intervals, budget=budget),
            profile=env.profile(),
            insecure_poll=env.flag(INSECURE_POLL),
            collect=env.choice(COLLECT, COLLECT_MODES),
            allow_commands=env.flag(ALLOW_COMMANDS),
            command_namespaces=env.namespaces(COMMAND_NAMESPACES),
            health_file=Path(health_file) if health_file else None,
            kubeconfig=env.text(KUBECONFIG),
            in_cluster=env.flag(IN_CLUSTER),
        )

    def transport(self) -> HttpTransport:
        """HTTP(S) to the server; the connection is kept across the agent's longest quiet spell."""
        from snapsync.agent.transport import HttpTransport

        return HttpTransport(
            self.server_url,
            self.edge_id,
            self.secret,
            insecure=self.insecure_poll,
            keep_alive=self.config.intervals.longest + 60.0,
        )

    def kube_options(self) -> KubeOptions:
        from snapsync.collect import KubeOptions

        return KubeOptions(kubeconfig=self.kubeconfig, in_cluster=self.in_cluster)

    def collector(self, options: KubeOptions | None = None) -> Collector:
        """The live collector `collect` names; discovery is cached in the state directory."""
        from dataclasses import replace

        from snapsync.collect import KubeCollector, KubeWatchCollector

        cached = replace(
            options or self.kube_options(), discovery_cache_dir=self.state_dir / "discovery"
        )
        return KubeWatchCollector(cached) if self.collect == "watch" else KubeCollector(cached)

    def command_runner(self, options: KubeOptions | None = None) -> CommandRunner:
        """Cluster commands run in the allowed namespaces when allowed, else refused."""
        from snapsync.agent.loop import refuse_cluster_commands

        if not self.allow_commands:
            return refuse_cluster_commands
        from snapsync.agent.kube_commands import KubeCommandRunner

        return KubeCommandRunner(options or self.kube_options(), namespaces=self.command_namespaces)

    def agent(
        self, collector: Collector | None = None, commands: CommandRunner | None = None
    ) -> Agent:
        """The Agent `snapsync agent` runs; its snapshots carry the edge id as their environment."""
        from snapsync.agent.loop import Agent

        return Agent(
            collector or self.collector(),
            self.transport(),
            self.state_dir,
            self.config,
            profile=self.profile,
            environment_id=self.edge_id,
            commands=commands or self.command_runner(),
            heartbeat=self.health_file,
        )


def default_state_dir(edge_id: str, environ: Mapping[str, str]) -> Path:
    """$XDG_STATE_HOME/snapsync/EDGE_ID, as the XDG base-directory spec places state."""
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "snapsync" / edge_id


@dataclass(frozen=True)
class _Environment:
    """Reads and checks one variable at a time; every refusal names it."""

    values: Mapping[str, str]

    def text(self, variable: Variable) -> str | None:
        return self.values.get(variable.name) or variable.default

    def required(self, variable: Variable) -> str:
        value = self.text(variable)
        if value is None:
            raise InputError(f"missing {variable.flag}: pass the flag or set {variable.name}")
        return value

    def flag(self, variable: Variable) -> bool:
        value = self.required(variable)
        spelled = value.strip().lower()
        if spelled not in _TRUE | _FALSE:
            raise variable.refuse(f"{value!r} is not on or off (1/0, true/false, yes/no, on/off)")
        return spelled in _TRUE

    def seconds(self, variable: Variable, *, zero: bool = False) -> float:
        """A finite number of seconds, positive (or, with `zero`, zero or more)."""
        value = self.required(variable)
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if zero and seconds == 0:
            return seconds
        if not 0 < seconds < math.inf:  # also refuses nan
            kind = "zero or a positive" if zero else "a positive"
            raise variable.refuse(f"{value!r} is not {kind} number of seconds")
        return seconds

    def size(self, variable: Variable) -> int | None:
        """A number of bytes with an optional unit; None when unset."""
        value = self.text(variable)
        if value is None:
            return None
        try:
            return parse_size(value)
        except InputError as exc:
            raise variable.refuse(str(exc)) from None

    def choice(self, variable: Variable, choices: tuple[str, ...]) -> str:
        value = self.required(variable)
        if value not in choices:
            raise variable.refuse(f"{value!r} is not one of {', '.join(choices)}")
        return value

    def budget(self) -> BudgetConfig:
        """The budget and its policy; a refusal that names two knobs (a ceiling below the floor,
        a burst cap above the budget) is BudgetConfig's own line."""
        limit, period = self.required(BUDGET), self.required(BUDGET_PERIOD)
        size = self.size(BUDGET) or 0
        if size < 0:
            raise BUDGET.refuse(f"{limit!r} is not a number of bytes (0: unlimited)")
        burst = self.size(BUDGET_BURST)
        if burst is not None and burst <= 0:
            raise BUDGET_BURST.refuse(f"{self.text(BUDGET_BURST)!r} is not a positive size")
        try:
            period_start(period, 0.0)
        except InputError:
            raise BUDGET_PERIOD.refuse(
                f"{period!r} is not day, month or a positive number of seconds"
            ) from None
        policy = self.choice(BUDGET_POLICY, POLICIES)
        floor = self.seconds(UPLOAD_INTERVAL_FLOOR, zero=True)
        ceiling = self.seconds(UPLOAD_INTERVAL_CEILING)
        try:
            BudgetConfig(interval_floor=floor, interval_ceiling=ceiling)
        except InputError as exc:
            raise refuse_together((UPLOAD_INTERVAL_FLOOR, UPLOAD_INTERVAL_CEILING), exc) from None
        try:
            return BudgetConfig(
                size,
                period,
                policy=policy,
                burst=burst,
                interval_floor=floor,
                interval_ceiling=ceiling,
            )
        except InputError as exc:  # what is left to refuse: a burst cap above the budget
            raise refuse_together((BUDGET, BUDGET_BURST), exc) from None

    def profile(self) -> Profile:
        try:
            return load_profile(self.required(PROFILE))
        except SnapsyncError as exc:
            raise type(exc)(f"{PROFILE.flag}: {exc} ({PROFILE.name})") from None

    def namespaces(self, variable: Variable) -> frozenset[str] | None:
        """`a,b`: None (any) when empty; each must be a namespace name."""
        names = frozenset(filter(None, (n.strip() for n in self.required(variable).split(","))))
        bad = sorted(n for n in names if not OBJECT_NAME.fullmatch(n))
        if bad:
            raise variable.refuse(f"{bad[0]!r} is not a namespace name")
        return names or None
