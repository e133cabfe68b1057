"""`qwen-fetch mirrors`: the configured sources, and with ``--probe`` how healthy and fast each is.

Token values are never printed: only the name of the variable and whether it is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from qwen_fetch.cli.common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    OfflineOpt,
    console,
    emit_json,
    go_offline,
    run_command,
    styled,
)
from qwen_fetch.core.errors import EXIT_CODE_HELP, ExitCode

if TYPE_CHECKING:  # keep `qwen-fetch --help` free of httpx
    from qwen_fetch.core.ranking import ProbeResult, Ranking
    from qwen_fetch.sources.config import Config, SourceConfig


def redact(url: str) -> str:
    """An endpoint for display: user:password in the URL replaced by ``***``."""
    from qwen_fetch.sources.config import mask_url

    return mask_url(url)


def source_row(sc: SourceConfig) -> dict[str, Any]:
    """One source as data (``--json`` and the table): never the token itself."""
    from qwen_fetch.sources.registry import default_revision

    return {
        "name": sc.name, "kind": sc.kind, "endpoint": redact(sc.endpoint), "priority": sc.priority,
        "endpoint_env": sc.endpoint_env, "token_env": sc.token_env, "token_set": sc.token() is not None,
        "default_revision": default_revision(sc),
        "model_map": {m.prefix: m.to for m in sc.model_map}, "optional_files": list(sc.optional_files),
        "proxy": _route(sc), "ca_bundle": sc.ca_bundle,
    }


def _route(sc: SourceConfig) -> str:
    """Which proxy requests to the endpoint take (credentials redacted)."""
    from qwen_fetch.core.proxy import ProxyParseError, ProxyPolicy

    try:
        policy = sc.proxy or ProxyPolicy.from_env()
    except ProxyParseError as exc:
        return f"unusable proxy variable: {exc}"
    return policy.route(sc.endpoint)


def report(cfg: Config, results: list[ProbeResult] | None, ranking: Ranking[SourceConfig] | None) -> dict[str, Any]:
    """Everything ``mirrors`` shows, as one JSON-able document (pure)."""
    by_name = {r.name: r for r in results or []}
    rows = []
    for sc in cfg.ordered():
        row = source_row(sc)
        if results is not None:
            r = by_name.get(sc.name)
            row["probe"] = r.to_dict() if r else None
        rows.append(row)
    doc: dict[str, Any] = {"ok": True, "config": cfg.origin, "sources": rows}
    if ranking is not None:
        doc["auto"] = [sc.name for sc in ranking.order]
        doc["skipped"] = [{"name": sc.name, "reason": reason} for sc, reason in ranking.skipped]
    return doc


def _speed(bps: float | None) -> str:
    from qwen_fetch.core.units import format_rate

    return "-" if bps is None else format_rate(bps)


def print_table(doc: dict[str, Any], probed: bool) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    con = console()
    if not con.is_terminal:  # piped or captured: no terminal width to respect, don't fold URLs
        con.width = max(con.width, 160)
    table = Table(title=Text(f"sources ({doc['config']})"), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("endpoint", overflow="fold")
    table.add_column("prio", justify="right", no_wrap=True)
    table.add_column("token", overflow="fold")
    if probed:
        table.add_column("status", no_wrap=True)
        table.add_column("latency", justify="right", no_wrap=True)
        table.add_column("speed", justify="right", no_wrap=True)
        table.add_column("auto", justify="right", no_wrap=True)
    order = {name: i + 1 for i, name in enumerate(doc.get("auto", []))}
    notes: list[Text] = []
    for row in doc["sources"]:
        token = "-" if not row["token_env"] else f"${row['token_env']} ({'set' if row['token_set'] else 'unset'})"
        cells: list[str | Text] = [row["name"], row["kind"], row["endpoint"], str(row["priority"]), token]
        if row["endpoint_env"]:
            notes.append(Text(f"{row['name']}: endpoint from ${row['endpoint_env']}"))
        if row["proxy"] not in ("direct", "-"):
            notes.append(Text(f"{row['name']}: proxy {row['proxy']}"))
        if row["ca_bundle"]:
            notes.append(Text(f"{row['name']}: trusts only the CAs in {row['ca_bundle']}"))
        if probed:
            p = row.get("probe") or {}
            status = styled("ok", "green") if p.get("ok") else styled("down", "red")
            if not p.get("ok"):
                notes.append(Text.assemble(f"{row['name']}: ", styled("down", "red"), f": {p.get('reason') or '?'}"))
            latency = f"{p['latency_ms']:.0f} ms" if p.get("latency_ms") is not None else "-"
            rank = str(order[row["name"]]) if row["name"] in order else "skip"
            cells += [status, latency, _speed(p.get("throughput_bytes_per_s")), rank]
        table.add_row(*cells)
    con.print(table)
    for note in notes:
        con.print(note)
    if probed:
        auto = doc.get("auto") or []
        if auto:
            con.print(f"auto would use: {' -> '.join(auto)} (the first is primary, the rest per-file fallbacks)")
        else:
            con.print(styled("auto has no healthy source", "red"))


def register(app: typer.Typer) -> None:
    @app.command("mirrors", epilog=EXIT_CODE_HELP)
    def mirrors(
        config: ConfigOpt = None,
        probe: Annotated[bool, typer.Option("--probe", help="Measure latency (and with --model a short throughput "
                                                            "sample) for each source; show what `auto` picks.")] = False,
        model: Annotated[str | None, typer.Option("--model", help="Probe this model id: resolve it on every source "
                                                                   "and read a short range of its largest file.")] = None,
        timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Per-request probe timeout (seconds).")] = 5.0,
        offline: OfflineOpt = False,
        json_mode: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        """List the configured sources (mirrors.yaml, HF_ENDPOINT, MODELSCOPE_DOMAIN); --probe tests them.

        Exits 0 when listing, and with --probe when at least one source is healthy; 4 when none is.
        """

        def body() -> None:
            from qwen_fetch.sources.config import load_config

            go_offline(offline)
            cfg = load_config(config)
            results: list[ProbeResult] | None = None
            ranking: Ranking[SourceConfig] | None = None
            if probe or model:
                from qwen_fetch.core.ranking import rank
                from qwen_fetch.sources.select import probe_all
                from qwen_fetch.store.hfcache import check_repo_id

                if model:
                    check_repo_id(model)
                results = probe_all(cfg.ordered(), model=model, timeout=timeout)
                ranking = rank(results, cfg.ordered())
            doc = report(cfg, results, ranking)
            if ranking is not None and not ranking.order:
                doc["ok"] = False
            if json_mode:
                emit_json(doc)
            else:
                print_table(doc, probed=results is not None)
            if ranking is not None and not ranking.order:
                raise typer.Exit(int(ExitCode.SOURCE))

        run_command(body, json_mode=json_mode, debug=debug)
