"""Portfolio and market-data tools: get_portfolio, sync_positions, scan_market, get_quote."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from catalyst_mcp.domain.phases import Phase, PhaseStatus
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import (
    Call,
    CycleIdArg,
    SymbolArg,
    Toolkit,
    caller_of,
    hints,
)
from catalyst_mcp.services import portfolio, sync


def register(kit: Toolkit) -> None:
    # --- PORTFOLIO -----------------------------------------------------------------------------------------

    @kit.tool(hints(True, False, True, True))
    async def get_portfolio(ctx: Context, cycle_id: CycleIdArg | None = None) -> m.PortfolioOut:
        """The account and the open positions from the book, marked to market."""

        async def body(call: Call) -> m.PortfolioOut:
            return mapping.portfolio_out(await portfolio.get_portfolio(call.rt))

        return await kit.run(ctx, "get_portfolio", cycle_id, body)

    @kit.tool(hints(False, True, True, True))
    async def sync_positions(
        ctx: Context, dry_run: bool = False, force: bool = False, cycle_id: CycleIdArg | None = None
    ) -> m.SyncOut:
        """Make the book equal the broker's positions: close phantoms, add missing, correct quantities.
        Refuses (changing nothing) when the broker's answer looks like an outage, unless force=true."""

        async def body(call: Call) -> m.SyncOut:
            result = await sync.sync_positions(
                call.rt, dry_run=dry_run, force=force, cycle_id=cycle_id, caller=caller_of(ctx)
            )
            return mapping.sync_out(result)

        return await kit.run(ctx, "sync_positions", cycle_id, body, writes=not dry_run)

    # --- SCAN / ANALYZE ----------------------------------------------------------------------------------

    @kit.tool(hints(True, False, True, True))
    async def scan_market(
        ctx: Context, cycle_id: CycleIdArg | None = None, limit: Annotated[int, Field(ge=1, le=50)] = 10
    ) -> m.ScanOut:
        """Candidates ranked by momentum (price change weighted by relative volume), best first."""

        async def body(call: Call) -> m.ScanOut:
            found = await call.rt.market_data.scan(limit)
            return m.ScanOut(candidates=[mapping.candidate_out(c) for c in found], tier=call.rt.market_data.tier)

        return await kit.run(ctx, "scan_market", cycle_id, body)

    @kit.tool(hints(True, False, True, True))
    async def get_quote(ctx: Context, symbol: SymbolArg, cycle_id: CycleIdArg | None = None) -> m.QuoteOut:
        """The latest bid, ask and last price of a symbol."""

        async def body(call: Call) -> m.QuoteOut:
            canonical = normalise_symbol(call.rt.profile.market, symbol)
            quote = await call.rt.market_data.get_quote(canonical)
            if quote is None:
                call.add(Phase.ANALYZE, PhaseStatus.FAILED, f"no quote for {canonical}")
            return mapping.quote_out(canonical, quote)

        return await kit.run(ctx, "get_quote", cycle_id, body)
