"""``keys``, ``tokens`` and ``tenants``: what an operator changes in Redis directly."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, TypeVar

import typer
from redis.asyncio import Redis, RedisCluster

from .. import limits
from ..auth import ApiKeys, UnknownKey
from ..config import Settings
from ..limits import FIELD_NAMES, WHOLE_NUMBER_FIELDS, TenantLimits
from ..tokens import SessionTokens
from ._output import ExitCode, errors_as_lines, fail, iso, print_json, print_table, table
from ._server import RedisClusterFlag, RedisTimeout, RedisUrl, settings_or_exit

T = TypeVar("T")

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage the keys that sign session tokens.", no_args_is_help=True)
tenants_app = typer.Typer(
    help="Show and change a tenant's rate limits and quotas.", no_args_is_help=True
)

_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str | float) -> float:
    """Seconds of ``30d``, ``12h``, ``90m``, ``45s`` or a plain ``3600`` (or a number).

    Raises:
        typer.BadParameter: ``text`` is not a duration, or is negative.
    """
    text = str(text).strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], 0)
    try:
        seconds = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):  # "abc", "nan", "inf", "1e400"
        raise typer.BadParameter(f"{text!r} is not a duration: use e.g. 30d, 12h, 90m, 45s or 3600")
    if seconds < 0:
        raise typer.BadParameter(f"{text!r}: a duration is 0 or more seconds")
    return seconds


Duration = Annotated[
    float | None,
    typer.Option(parser=parse_duration, metavar="DURATION", help="30d, 12h, 90m, 45s or seconds"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document instead")]


def _run(
    redis_url: str | None,
    redis_cluster: bool | None,
    redis_timeout_seconds: float | None,
    work: Callable[[Redis | RedisCluster, Settings], Awaitable[T]],
) -> T:
    """Run ``work`` with an admin Redis client of these settings; failures as one line."""
    settings = settings_or_exit(
        {
            "redis_url": redis_url,
            "redis_cluster": redis_cluster,
            "redis_timeout_seconds": redis_timeout_seconds,
        }
    )
    cls: type[Redis] | type[RedisCluster] = RedisCluster if settings.redis_cluster else Redis

    async def run() -> T:
        client = cls.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        try:
            return await work(client, settings)
        finally:
            await client.aclose()

    with errors_as_lines():
        try:
            return asyncio.run(run())
        except UnknownKey as exc:
            fail(
                f"there is no API key {exc.args[0]!r}; see keys list",
                "NOT_FOUND",
                ExitCode.NOT_FOUND,
            )


# --- keys --------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Argument(help="the tenant the key belongs to")] = None,
    tenant_flag: Annotated[str | None, typer.Option("--tenant", hidden=True)] = None,
    expires_in: Duration = None,
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """Create a key for a tenant and print it (it is shown only once)."""
    name = tenant or tenant_flag
    if not name:
        fail("name the tenant: session-memory keys create <tenant>", "USAGE", ExitCode.USAGE)

    async def work(client: Redis | RedisCluster, _: Settings) -> str:
        return await ApiKeys(client).create(name, expires_in=expires_in)

    print(_run(redis_url, redis_cluster, redis_timeout_seconds, work))
    until = "" if expires_in is None else f", expires in {expires_in:g} s"
    print(f"(tenant {name}{until}; this key is shown only once)", file=sys.stderr)


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="the id of the key to replace (see keys list)")],
    grace: Annotated[
        float,
        typer.Option(
            parser=parse_duration,
            metavar="DURATION",
            help="how long the old key keeps working",
        ),
    ] = 3600.0,
    expires_in: Duration = None,
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """Print a new key for a key's tenant; the old one keeps working for --grace."""

    async def work(client: Redis | RedisCluster, _: Settings) -> str:
        return await ApiKeys(client).rotate(key_id, grace, expires_in=expires_in)

    print(_run(redis_url, redis_cluster, redis_timeout_seconds, work))
    print(
        f"(the old key {key_id} works for {grace:g} s more; this key is shown only once)",
        file=sys.stderr,
    )


@keys_app.command("list")
def keys_list(
    as_json: AsJson = False,
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """List key ids, tenants, creation and expiry times (UTC) and status; never the keys."""

    async def work(client: Redis | RedisCluster, _: Settings) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                "key_id": i.key_id,
                "tenant": i.tenant,
                "created": iso(i.created_at),
                "expires": iso(i.expires_at),
                "status": "expired" if i.expired(now) else "active",
            }
            for i in await ApiKeys(client).list()
        ]

    rows = _run(redis_url, redis_cluster, redis_timeout_seconds, work)
    if as_json:
        print_json(rows)
        return
    grid = table("KEY ID", "TENANT", "CREATED", "EXPIRES", "STATUS")
    for row in rows:
        grid.add_row(
            row["key_id"], row["tenant"], row["created"], row["expires"] or "never", row["status"]
        )
    print_table(grid)


@keys_app.command("revoke")
def keys_revoke(
    key_ids: Annotated[list[str], typer.Argument(help="ids of the keys (see keys list)")],
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """Revoke keys by id: calls with them fail at once on every server."""

    async def work(client: Redis | RedisCluster, _: Settings) -> int:
        return await ApiKeys(client).revoke(key_ids)

    count = _run(redis_url, redis_cluster, redis_timeout_seconds, work)
    print(f"revoked {count} of {len(key_ids)}")
    if count < len(key_ids):
        fail(
            f"{len(key_ids) - count} of the key ids did not name a key; see keys list",
            "NOT_FOUND",
            ExitCode.NOT_FOUND,
        )


# --- tokens ------------------------------------------------------------------------


@tokens_app.command("rotate-key")
def tokens_rotate_key(
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """Add a signing key for new tokens and print its id; older keys keep verifying."""

    async def work(client: Redis | RedisCluster, _: Settings) -> str:
        return await SessionTokens(client).rotate_key()

    print(_run(redis_url, redis_cluster, redis_timeout_seconds, work))
    print("(every server signs new tokens with it within a second)", file=sys.stderr)


@tokens_app.command("retire-key")
def tokens_retire_key(
    kid: Annotated[str, typer.Argument(help="the signing key's id (see tokens keys)")],
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """Delete a signing key: the tokens it signed stop working."""

    async def work(client: Redis | RedisCluster, _: Settings) -> bool:
        return await SessionTokens(client).retire_key(kid)

    if not _run(redis_url, redis_cluster, redis_timeout_seconds, work):
        fail(f"there is no signing key {kid!r}; see tokens keys", "NOT_FOUND", ExitCode.NOT_FOUND)
    print(f"retired {kid}")


@tokens_app.command("keys")
def tokens_keys(
    as_json: AsJson = False,
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """List the signing keys (never their secrets), the current one last."""

    async def work(client: Redis | RedisCluster, _: Settings) -> list[dict[str, Any]]:
        return [
            {"kid": i.kid, "created": iso(i.created_at), "current": i.current}
            for i in await SessionTokens(client).signing_keys()
        ]

    rows = _run(redis_url, redis_cluster, redis_timeout_seconds, work)
    if as_json:
        print_json(rows)
        return
    grid = table("KID", "CREATED", "STATUS")
    for row in rows:
        grid.add_row(row["kid"], row["created"], "current" if row["current"] else "verifies")
    print_table(grid)


# --- tenants -----------------------------------------------------------------------


_Overrides = tuple[dict[str, float | int], Settings]


def _show(tenant: str, own: dict[str, float | int], settings: Settings, as_json: bool) -> None:
    effective = limits.apply_overrides(TenantLimits.from_settings(settings), own)
    if as_json:
        print_json(
            {"tenant": tenant, "limits": dataclasses.asdict(effective), "overridden": sorted(own)}
        )
        return
    grid = table("LIMIT", "VALUE", "FROM")
    for name in FIELD_NAMES:
        value = getattr(effective, name)
        text = str(int(value)) if value == int(value) else f"{value:g}"
        if value == 0 and name not in limits.AT_LEAST_ONE_FIELDS:
            text += " (unlimited)"
        grid.add_row(name, text, "override" if name in own else "default")
    print_table(grid)


def _set_limits(
    tenant: str,
    as_json: bool,
    redis_url: str | None,
    redis_cluster: bool | None,
    redis_timeout_seconds: float | None,
    **values: float | None,
) -> None:
    given = {name: value for name, value in values.items() if value is not None}
    if not given:
        fail("name at least one limit, e.g. --reads-per-second 100", "USAGE", ExitCode.USAGE)

    async def work(client: Redis | RedisCluster, settings: Settings) -> _Overrides:
        await limits.set_overrides(client, tenant, given)
        return await limits.overrides(client, tenant), settings

    _show(tenant, *_run(redis_url, redis_cluster, redis_timeout_seconds, work), as_json)


def _limit_option(name: str) -> inspect.Parameter:
    number: type = int if name in WHOLE_NUMBER_FIELDS else float
    option = typer.Option("--" + name.replace("_", "-"), help=f"the tenant's {name}")
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[number | None, option],
    )


# One option per tenant limit, from limits.FIELD_NAMES: a new limit gets its flag.
_set_limits.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "tenant",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[str, typer.Argument(help="the tenant")],
        ),
        *(_limit_option(name) for name in FIELD_NAMES),
        inspect.Parameter(
            "as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=AsJson
        ),
        inspect.Parameter(
            "redis_url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RedisUrl
        ),
        inspect.Parameter(
            "redis_cluster",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=RedisClusterFlag,
        ),
        inspect.Parameter(
            "redis_timeout_seconds",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=RedisTimeout,
        ),
    ]
)
_set_limits.__annotations__ = {}
tenants_app.command(
    "set-limits",
    help="Override some of a tenant's limits (0 = unlimited); the rest follow the defaults."
    " Prints the effective limits.",
)(_set_limits)


def _check_fields(fields: list[str] | None) -> list[str] | None:
    for name in fields or ():
        if name not in FIELD_NAMES:
            raise typer.BadParameter(
                f"{name!r} is not a limit; choose from {', '.join(FIELD_NAMES)}"
            )
    return fields


@tenants_app.command("reset")
def tenants_reset(
    tenant: Annotated[str, typer.Argument(help="the tenant")],
    field: Annotated[
        list[str] | None,
        typer.Option(
            callback=_check_fields,
            autocompletion=lambda: list(FIELD_NAMES),
            metavar="LIMIT",
            help="only this limit (repeatable)",
        ),
    ] = None,
    as_json: AsJson = False,
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """Drop a tenant's overrides (all, or --field); prints the effective limits."""

    async def work(client: Redis | RedisCluster, settings: Settings) -> _Overrides:
        await limits.clear_overrides(client, tenant, field)
        return await limits.overrides(client, tenant), settings

    _show(tenant, *_run(redis_url, redis_cluster, redis_timeout_seconds, work), as_json)


@tenants_app.command("show")
def tenants_show(
    tenant: Annotated[str, typer.Argument(help="the tenant")],
    as_json: AsJson = False,
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """A tenant's effective limits, overrides marked (the defaults from this environment)."""

    async def work(client: Redis | RedisCluster, settings: Settings) -> _Overrides:
        return await limits.overrides(client, tenant), settings

    _show(tenant, *_run(redis_url, redis_cluster, redis_timeout_seconds, work), as_json)


@tenants_app.command("list")
def tenants_list(
    as_json: AsJson = False,
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
) -> None:
    """The tenants that have overrides, with them."""

    async def work(client: Redis | RedisCluster, _: Settings) -> dict[str, dict[str, float | int]]:
        return await limits.all_overrides(client)

    every = dict(sorted(_run(redis_url, redis_cluster, redis_timeout_seconds, work).items()))
    if as_json:
        print_json(every)
        return
    grid = table("TENANT", "OVERRIDES")
    for tenant, values in every.items():
        grid.add_row(tenant, json.dumps(values, sort_keys=True))
    print_table(grid)
