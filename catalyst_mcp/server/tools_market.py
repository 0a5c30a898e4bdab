"""Portfolio and market-data tools: get_portfolio, sync_positions, scan_market, get_quote, get_technicals."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from catalyst_mcp.domain.phases import Phase, PhaseStatus
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import DESTRUCTIVE_IDEMPOTENT, READ_ONLY, CallArg, CycleIdArg, SymbolArg, tool


@tool(READ_ONLY, in_cycle=True)
async def get_portfolio(call: CallArg, cycle_id: CycleIdArg | None = None) -> m.PortfolioOut:
    """The account and the open positions from the book, marked to market."""
    return mapping.portfolio_out(await call.services.portfolio.get_portfolio())


@tool(DESTRUCTIVE_IDEMPOTENT, in_cycle=True)
async def sync_positions(
    call: CallArg, dry_run: bool = False, force: bool = False, cycle_id: CycleIdArg | None = None
) -> m.SyncOut:
    """Make the book equal the broker's positions: close phantoms, add missing, correct quantities.
    Refuses (changing nothing) when the broker's answer looks like an outage, unless force=true."""
    if not dry_run:
        call.refuse_in_scan()
    result = await call.services.sync.sync_positions(
        dry_run=dry_run, force=force, cycle_id=cycle_id, caller=call.caller
    )
    return mapping.sync_out(result)


@tool(READ_ONLY, in_cycle=True)
async def scan_market(
    call: CallArg, cycle_id: CycleIdArg | None = None, limit: Annotated[int, Field(ge=1, le=50)] = 10
) -> m.ScanOut:
    """Rank the market's universe by momentum, relative volume and gap after price, volume and spread filters,
    best first. Tiers of thresholds are tried strictest first; the first under which anything qualifies is used
    and named in `tier` (null when none found anything). Every scan is stored with its cycle."""
    report = await call.services.portfolio.scan(limit, cycle_id)
    call.add(Phase.SCAN, PhaseStatus.COMPLETED, report.result.describe())
    return mapping.scan_out(report)


@tool(READ_ONLY, in_cycle=True)
async def get_quote(call: CallArg, symbol: SymbolArg, cycle_id: CycleIdArg | None = None) -> m.QuoteOut:
    """The latest bid, ask and last price of a symbol."""
    canonical = normalise_symbol(call.services.profile.market, symbol)
    quote = await call.services.portfolio.quote(canonical)
    if quote is None:
        call.add(Phase.ANALYZE, PhaseStatus.FAILED, f"no quote for {canonical}")
    lot = call.services.portfolio.lot_size(canonical) if quote is not None else None
    return mapping.quote_out(canonical, quote, lot)


@tool(READ_ONLY, in_cycle=True)
async def get_technicals(call: CallArg, symbol: SymbolArg, cycle_id: CycleIdArg | None = None) -> m.TechnicalsOut:
    """A symbol's indicators: RSI-14, SMA 10/20/50, EMA 9/21, MACD 12/26/9 and ATR-14 over daily bars, VWAP
    and relative volume over today's five-minute bars; null where the bars are too few."""
    canonical = normalise_symbol(call.services.profile.market, symbol)
    reading = await call.services.technicals.technicals(canonical, call.started)
    if not reading.known:
        call.add(Phase.ANALYZE, PhaseStatus.FAILED, f"no bars for {canonical}")
    return mapping.technicals_out(reading)


TOOLS = (get_portfolio, sync_positions, scan_market, get_quote, get_technicals)
