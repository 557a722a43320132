"""`telcolake partners|publish|serve-shares`: partner shares over Delta Sharing."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError

partners_app = typer.Typer(help="Partners (partners.toml): secrets and Delta Sharing tokens.", no_args_is_help=True)


partner_secrets_app = typer.Typer(help="Per-partner pseudonymisation secrets.", no_args_is_help=True)


partner_tokens_app = typer.Typer(help="Per-partner bearer tokens (stored hashed, with an expiry).", no_args_is_help=True)


partners_app.add_typer(partner_secrets_app, name="secrets")


partners_app.add_typer(partner_tokens_app, name="token")


@partners_app.command("list")
def partners_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Partners, what they receive, and which tables are published."""
    import json

    from pipelines.core.lake import Lake
    from pipelines.sharing.manifest import published_versions
    from pipelines.sharing.registry import load_partners

    s = settings()
    try:
        partners = load_partners(s)
    except TelcolakeError as exc:
        fail(exc)
    lake = Lake.from_settings(s)
    rows = [{"partner": p.partner_id, "name": p.name, "kind": p.kind, "ids": ", ".join(p.plmns) or p.ott_partner_id or "-",
             "tables": published_versions(lake, p.partner_id, p.tables)} for p in partners.values()]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("partner", "name", "kind", "identifiers", "tables (published version)")
    for r in rows:
        table.add_row(r["partner"], r["name"], r["kind"], r["ids"], ", ".join(f"{t}@{'-' if v is None else v}" for t, v in r["tables"].items()))
    console.print(table)


@partner_secrets_app.command("init")
def partner_secrets_init() -> None:
    """Write random dev secrets for partners without one into the git-ignored secrets file."""
    from pipelines.sharing.registry import init_secrets

    s = settings()
    try:
        path, added = init_secrets(s)
    except TelcolakeError as exc:
        fail(exc)
    console.print(f"{path}: new secrets for {', '.join(added)}" if added else f"{path}: every partner already has a secret")


@partner_tokens_app.command("create")
def partner_token_create(
    partner: str = typer.Argument(..., help="Partner id from partners.toml."),
    days: float = typer.Option(None, "--days", help="Lifetime in days (default: [sharing] token_days)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Public server URL ending in /delta-sharing (default: [sharing] endpoint)."),
    out: Path = typer.Option(None, "--out", help="Write the profile file here instead of printing it."),
) -> None:
    """Issue a bearer token and print the partner's Delta Sharing profile file (JSON)."""
    import json

    from pipelines.sharing.registry import sharing_settings
    from pipelines.sharing.tokens import create_token

    s = settings()
    try:
        issued = create_token(s, partner, days=days)
        profile = json.dumps(issued.profile((endpoint or sharing_settings(s).endpoint).rstrip("/")), indent=2)
    except TelcolakeError as exc:
        fail(exc)
    if out:
        out.write_text(profile + "\n")
        out.chmod(0o600)
        err.print(f"profile for {partner} (token {issued.token_id}, expires {issued.expires_at:%Y-%m-%d}) written to {out}")
    else:
        print(profile)


@partner_tokens_app.command("revoke")
def partner_token_revoke(
    partner: str = typer.Argument(..., help="Partner id from partners.toml."),
    token_id: str = typer.Option(None, "--token-id", help="Revoke only this token (default: every live token of the partner)."),
) -> None:
    """Revoke a partner's tokens; the server refuses them from the next request on."""
    from pipelines.sharing.registry import get_partner
    from pipelines.sharing.tokens import revoke_tokens

    s = settings()
    try:
        get_partner(s, partner)
        n = revoke_tokens(s, partner, token_id=token_id)
    except TelcolakeError as exc:
        fail(exc)
    console.print(f"revoked {n} token(s) of {partner}")


def publish(
    partner: str = typer.Option(None, "--partner", help="Publish only this partner's share (default: every partner)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Build, quality-gate and publish partner shares (a new Delta version only when content changed)."""
    import json

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipelines.sharing.publish import publish as do_publish

    s = settings()
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, disable=quiet or as_json) as progress:
            task = progress.add_task("publishing", total=None)
            results = do_publish(s, partner, on_step=lambda m: progress.update(task, description=m))
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps([r.as_dict() for r in results], default=str))
        return
    if quiet:
        return
    table = Table("partner", "table", "status", "rows", "version", "gate")
    for r in results:
        for t in r.tables:
            table.add_row(r.partner_id, t.table, t.status, f"{t.rows:,}", "-" if t.version is None else str(t.version), r.gate)
    console.print(table)


def serve_shares(
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 for every interface)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Public URL ending in /delta-sharing that file URLs are built on (default: [sharing] endpoint)."),
) -> None:
    """Serve the partner shares over the Delta Sharing protocol (FastAPI + uvicorn)."""
    from pipelines.sharing.registry import sharing_settings
    from pipelines.sharing.server import serve, url_mismatch

    s = settings()
    try:
        public = endpoint or sharing_settings(s).endpoint
        console.print(f"Delta Sharing server on http://{host}:{port}/delta-sharing (Ctrl-C to stop); file URLs on {public}")
        warning = url_mismatch(public, host, port)
        if warning:
            err.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True, highlight=False)
        serve(s, host=host, port=port, endpoint=endpoint)
    except TelcolakeError as exc:
        fail(exc)
