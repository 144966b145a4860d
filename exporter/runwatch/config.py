"""The `runwatch serve` config: which runs to follow, how to read them.

Every problem is a ConfigError naming file:line and the reason; unknown keys
name the nearest valid key. Packs are compiled here too, so `runwatch check`
finds a broken regex before `serve` starts. The keys are documented in README.md.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .parse.packs import Pack, builtin_names, load_builtin, load_pack_file
from .model.runs import RUN_ID_RE, RunSpec
from .settings import DEFAULT_LISTEN, DEFAULT_MAX_LINE, parse_listen
from .yamlfile import ConfigError, Map, Seq, check_keys, expect, file_problem, load_file, number

TOP_KEYS = ("listen", "max_line_bytes", "grace_seconds", "poll_interval", "file_watch", "data_dir",
            "checkpoint_seconds", "loki", "redact", "remote_write", "runs")
FILE_WATCH = ("inotify", "poll")
RUN_KEYS = ("id", "file", "from", "packs", "rules", "kind", "url", "labels", "cost_per_hour", "budget_usd",
            "total", "azureml_job", "azure_vm", "wandb")
CLOUD_KEYS = ("azureml_job", "azure_vm", "wandb")   # state sources (docs/cloud.md); parsed without their SDKs
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {"run_id", "kind", "source", "url", "job", "instance"}


@dataclass
class RunConfig:
    spec: RunSpec
    file: str | None          # a path, or "-" for stdin; None when the run has only cloud sources
    from_start: bool
    packs: list[Pack]
    cloud: dict = field(default_factory=dict)   # azureml_job / azure_vm / wandb -> its config object


@dataclass
class Config:
    path: str
    listen: tuple[str, int]
    max_line_bytes: int = DEFAULT_MAX_LINE
    grace_seconds: float = 300.0
    poll_interval: float = 0.02
    data_dir: str | None = None          # state and history; None: --data-dir / RUNWATCH_DATA_DIR / default
    file_watch: str = "inotify"          # inotify (polling where it cannot work) or poll
    checkpoint_seconds: float = 5.0      # how often followed files' positions and run states are saved
    runs: list[RunConfig] = field(default_factory=list)
    loki: object = None                  # loki.LokiConfig from the `loki:` mapping (docs/loki.md)
    redact: list[str] = field(default_factory=list)   # extra redaction regexes
    remote_write: object = None          # remote_write.RemoteWriteConfig (docs/remote-write.md)


def _listen(value, m: Map, key) -> tuple[str, int]:
    try:
        return parse_listen(str(value))
    except ValueError as e:
        raise ConfigError(m.file, m.line_of(key), f"listen: {e}") from None


def load_config(path: str) -> Config:
    data = load_file(path)
    if data is None:
        raise ConfigError(path, 1, "the config is empty; it needs at least a 'runs:' list")
    if not isinstance(data, Map):
        raise ConfigError(path, getattr(data, "line", 1), "the config must be a mapping with a 'runs:' list")
    check_keys(data, TOP_KEYS, "the config")
    cfg = Config(path=path, listen=_listen(data.get("listen", DEFAULT_LISTEN), data, "listen"))
    cfg.max_line_bytes = number(data, "max_line_bytes", DEFAULT_MAX_LINE, minimum=1, integer=True)
    cfg.grace_seconds = float(number(data, "grace_seconds", 300.0, minimum=0))
    cfg.poll_interval = float(number(data, "poll_interval", 0.02, minimum=0.001))
    cfg.checkpoint_seconds = float(number(data, "checkpoint_seconds", 5.0, minimum=0.05))
    if "file_watch" in data:
        cfg.file_watch = expect(data["file_watch"], str, data, "file_watch", "file_watch")
        if cfg.file_watch not in FILE_WATCH:
            raise ConfigError(path, data.line_of("file_watch"),
                              f"file_watch: {cfg.file_watch!r} is not one of {', '.join(FILE_WATCH)}")
    if "data_dir" in data:
        d = expect(data["data_dir"], str, data, "data_dir", "data_dir")
        cfg.data_dir = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(d))
    if "loki" in data:
        from .export.loki.config import config_from_mapping
        cfg.loki = config_from_mapping(data["loki"], os.path.dirname(os.path.abspath(path)))
    if "redact" in data:
        from .parse.redact import redact_from_config
        cfg.redact = redact_from_config(data["redact"], data)
    if "remote_write" in data:
        from .export.remote_write import config_from_mapping as remote_write_config
        cfg.remote_write = remote_write_config(data["remote_write"], os.path.dirname(os.path.abspath(path)))
    runs = data.get("runs")
    if not isinstance(runs, Seq) or not runs:
        raise ConfigError(path, data.line_of("runs"), "'runs:' must be a non-empty list of runs")
    base = os.path.dirname(os.path.abspath(path))
    seen: dict[str, int | None] = {}
    for i, r in enumerate(runs):
        if not isinstance(r, Map):
            raise ConfigError(path, runs.line_of(i), "each run is a mapping with at least 'id' and 'file'")
        cfg.runs.append(_run(r, base, seen))
    return cfg


def _run(r: Map, base: str, seen: dict) -> RunConfig:
    check_keys(r, RUN_KEYS, "a run")
    f = r.file
    if "id" not in r:
        raise ConfigError(f, r.line, "a run needs an 'id' (its run_id label)")
    rid = str(r["id"])
    if not RUN_ID_RE.match(rid):
        raise ConfigError(f, r.line_of("id"), f"id {rid!r}: use letters, digits and _ . : - (at most 128)")
    if rid in seen:
        raise ConfigError(f, r.line_of("id"), f"duplicate run id {rid!r} (first at line {seen[rid]})")
    seen[rid] = r.line_of("id")
    cloud = _cloud(r, rid)
    if "file" not in r and not cloud:
        raise ConfigError(f, r.line, f"run {rid!r} needs a source: 'file: PATH' (or 'file: -' for stdin), "
                                     f"or one of {', '.join(CLOUD_KEYS)}")
    src = expect(r["file"], str, r, "file", f"run {rid!r}: file") if "file" in r else None
    if src is not None and src != "-":
        src = os.path.join(base, os.path.expanduser(src))
    start = r.get("from", "start")
    if start not in ("start", "end"):
        raise ConfigError(f, r.line_of("from"), f"run {rid!r}: 'from' is start or end, got {start!r}")

    names = r.get("packs", ["waa"] if "azureml_job" in cloud else ["python"])
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        raise ConfigError(f, r.line_of("packs"), f"run {rid!r}: packs must be a list of pack names")
    packs = []
    for j, n in enumerate(names):
        line = names.line_of(j) if isinstance(names, Seq) else r.line_of("packs")
        packs.append(load_builtin(str(n), f, line))
    rules = r.get("rules", [])
    if isinstance(rules, str):
        rules = [rules]
    if not isinstance(rules, list):
        raise ConfigError(f, r.line_of("rules"), f"run {rid!r}: rules must be a file name or a list of them")
    for j, rf in enumerate(rules):
        p = os.path.join(base, os.path.expanduser(str(rf)))
        line = rules.line_of(j) if isinstance(rules, Seq) else r.line_of("rules")
        if not os.path.exists(p):
            raise ConfigError(f, line, f"run {rid!r}: rules file {rf!r} not found (looked at {p})")
        why = file_problem(p)
        if why:
            raise ConfigError(f, line, f"run {rid!r}: rules file {rf!r}: {why}")
        packs.append(load_pack_file(p))
    if not packs:
        raise ConfigError(f, r.line, f"run {rid!r}: no packs; built-in packs: {', '.join(builtin_names())}")

    labels = r.get("labels", {}) or {}
    if not isinstance(labels, dict):
        raise ConfigError(f, r.line_of("labels"), f"run {rid!r}: labels must be a mapping name: value")
    for k, v in labels.items():
        line = labels.line_of(k) if isinstance(labels, Map) else r.line_of("labels")
        if not LABEL_RE.match(str(k)) or str(k).startswith("__"):
            raise ConfigError(f, line, f"run {rid!r}: {k!r} is not a valid Prometheus label name")
        if k in RESERVED_LABELS:
            raise ConfigError(f, line, f"run {rid!r}: label {k!r} is set by runwatch; choose another name")
        if isinstance(v, (dict, list)):
            raise ConfigError(f, line, f"run {rid!r}: label {k!r} must have a plain value")
    url = str(expect(r["url"], str, r, "url", f"run {rid!r}: url")) if r.get("url") is not None else ""
    if url and urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ConfigError(f, r.line_of("url"), f"run {rid!r}: url must be an http:// or https:// address "
                                               f"(the status page links it), got {url[:60]!r}")
    rate = number(r, "cost_per_hour", None, minimum=0)
    budget = number(r, "budget_usd", None, minimum=0)
    total = number(r, "total", None, what=f"run {rid!r}: total", minimum=1, integer=True)
    source = "stdin" if src == "-" else "file" if src else next(iter(cloud))
    spec = RunSpec(id=rid, kind=str(r.get("kind", "job")), source=source,
                   url=url, labels={str(k): str(v) for k, v in labels.items()},
                   cost_rate=rate, budget=budget, total=total)
    return RunConfig(spec=spec, file=src, from_start=(start == "start"), packs=packs, cloud=cloud)


def _cloud(r: Map, rid: str) -> dict:
    """The run's cloud state sources, validated offline (the SDKs are not imported)."""
    from .sources import azure_vm, azureml, wandb_run
    parsers = {"azureml_job": azureml.parse_config, "azure_vm": azure_vm.parse_config,
               "wandb": wandb_run.parse_config}
    return {k: parsers[k](r[k], rid) for k in CLOUD_KEYS if k in r}
