"""What a transport uses: one object per use case, built by the composition root (``catalyst_mcp.bootstrap``)
from the ports and the store. Services receive what they use as constructor arguments; none of them sees this
bundle."""

from __future__ import annotations

from dataclasses import dataclass

from catalyst_mcp.domain.enums import BrokerMode
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Changes, Clock
from catalyst_mcp.risk.limits import RiskLimits
from catalyst_mcp.services.approval import ApprovalService
from catalyst_mcp.services.audit import AuditService
from catalyst_mcp.services.closing import ClosingService
from catalyst_mcp.services.cycles import CycleService
from catalyst_mcp.services.directives import DirectiveService
from catalyst_mcp.services.execution import ExecutionService
from catalyst_mcp.services.orders import OrderService
from catalyst_mcp.services.portfolio import PortfolioService
from catalyst_mcp.services.supervision import SupervisionService
from catalyst_mcp.services.sync import SyncService
from catalyst_mcp.services.technicals import TechnicalsService
from catalyst_mcp.services.workflow import WorkflowService


@dataclass(frozen=True, slots=True)
class Services:
    profile: MarketProfile
    clock: Clock
    agent_id: str  # the agent a call is made for unless it names another (CATALYST_AGENT_ID)
    broker_mode: BrokerMode
    limits: RiskLimits
    workflow: WorkflowService
    cycles: CycleService
    approvals: ApprovalService
    execution: ExecutionService
    closing: ClosingService
    orders: OrderService
    sync: SyncService
    portfolio: PortfolioService
    technicals: TechnicalsService
    directives: DirectiveService
    supervision: SupervisionService
    audit: AuditService
    changes: Changes
