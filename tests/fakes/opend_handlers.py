"""What the emulated OpenD answers to each request: protobuf Responses built with futu-api's own classes from
the emulated market (`opend_market`) and accounts (`opend_account`). Pure translation; the server
(`opend_emulator`) does the framing, the connections, the pushes and the faults."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from tests.fakes import opend_market as mkt
from tests.fakes.opend_account import (
    PAPER_ACC,
    REAL,
    REAL_ACC,
    SIMULATE,
    EmuOrder,
    OpenDAccounts,
    Refused,
)
from tests.fakes.opend_wire import common, module_of, qot_common, response

HK_TRD_MARKET: Final = 1  # TrdMarket_HK
HK_SEC_MARKET: Final = 1  # TrdSecMarket_HK / QotMarket_HK_Security
HKD: Final = 1
USER_ID: Final = 5_201_314
KL_1MIN: Final = 1
KL_DAY: Final = 2
KL_5MIN: Final = 6
_STATES: Final = {"MORNING": 3, "REST": 4, "AFTERNOON": 5, "CLOSED": 6}


def stamp(at: datetime) -> str:
    local = at.astimezone(mkt.HKT)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d}"


def _parse_time(text: str) -> datetime | None:
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=mkt.HKT)
        except ValueError:
            continue
    return None


class Handlers:
    """One method per proto id: the request in, the Response out; ``Refused`` becomes retType -1."""

    def __init__(self, accounts: OpenDAccounts) -> None:
        self.accounts = accounts
        self.table: dict[int, Callable[[Any, int], Any]] = {
            1001: self.init_connect,
            1002: self.global_state,
            1004: self.keep_alive,
            2001: self.acc_list,
            2005: self.unlock,
            2008: self.sub_acc_push,
            2101: self.funds,
            2102: self.positions,
            2201: self.order_list,
            2202: self.place,
            2205: self.modify,
            2221: self.history_orders,
            3103: self.history_kline,
            3202: self.static_info,
            3203: self.snapshot,
        }

    def answer(self, proto_id: int, request: Any, conn_id: int) -> Any:
        try:
            return self.table[proto_id](request, conn_id)
        except Refused as exc:
            return response(proto_id, ret_type=-1, message=str(exc))

    # --- connection -----------------------------------------------------------------------------------

    def init_connect(self, request: Any, conn_id: int) -> Any:
        answer = response(1001)
        s2c = answer.s2c
        s2c.serverVer, s2c.loginUserID, s2c.connID = 1001, USER_ID, conn_id
        s2c.connAESKey = "0123456789ABCDEF"  # sent even when the connection is not encrypted
        s2c.keepAliveInterval = 10
        return answer

    def keep_alive(self, request: Any, conn_id: int) -> Any:
        answer = response(1004)
        answer.s2c.time = int(self.accounts.clock.now().timestamp())
        return answer

    def global_state(self, request: Any, conn_id: int) -> Any:
        answer = response(1002)
        s2c = answer.s2c
        now = self.accounts.clock.now()
        state = mkt.market_state(now)
        if self.accounts.market_open is not None:
            state = "MORNING" if self.accounts.market_open else "CLOSED"
        s2c.marketHK = _STATES[state]
        s2c.marketUS = s2c.marketSH = s2c.marketSZ = s2c.marketHKFuture = _STATES["CLOSED"]
        s2c.qotLogined = s2c.trdLogined = True
        s2c.serverVer, s2c.serverBuildNo = 1001, 5008
        s2c.time = int(now.timestamp())
        s2c.localTime = now.timestamp()
        s2c.connID = conn_id
        return answer

    # --- accounts -------------------------------------------------------------------------------------

    def acc_list(self, request: Any, conn_id: int) -> Any:
        answer = response(2001)
        trd = common()
        for env, acc_id in ((SIMULATE, PAPER_ACC), (REAL, REAL_ACC)):
            acc = answer.s2c.accList.add()
            acc.trdEnv, acc.accID = env, acc_id
            acc.trdMarketAuthList.append(HK_TRD_MARKET)
            acc.accType = trd.TrdAccType_Margin if env == REAL else trd.TrdAccType_Cash
            acc.accStatus = trd.TrdAccStatus_Active
            if env == REAL:
                acc.securityFirm = trd.SecurityFirm_FutuSecurities
                acc.cardNum = "1001 2345 6789 0123"
            else:
                acc.simAccType = trd.SimAccType_Stock
        return answer

    def unlock(self, request: Any, conn_id: int) -> Any:
        self.accounts.unlock(request.c2s.pwdMD5, request.c2s.unlock)
        return response(2005)

    def sub_acc_push(self, request: Any, conn_id: int) -> Any:
        return response(2008)

    def _header(self, answer: Any, request: Any) -> tuple[int, int]:
        header = request.c2s.header
        answer.s2c.header.CopyFrom(header)
        if header.trdMarket != HK_TRD_MARKET:
            raise Refused("this account trades HK securities only")
        self.accounts.check_env(header.trdEnv, header.accID)
        return header.trdEnv, header.accID

    def funds(self, request: Any, conn_id: int) -> Any:
        answer = response(2101)
        env, _ = self._header(answer, request)
        cash, value = self.accounts.funds(env)
        f = answer.s2c.funds
        f.power = float(cash)
        f.totalAssets = float(cash + value)
        f.cash = float(cash)
        f.marketVal = float(value)
        f.frozenCash = f.debtCash = 0.0
        f.avlWithdrawalCash = float(cash)
        f.currency = HKD
        return answer

    def positions(self, request: Any, conn_id: int) -> Any:
        answer = response(2102)
        env, _ = self._header(answer, request)
        codes = set(request.c2s.filterConditions.codeList)
        accounts = self.accounts
        with accounts.lock:
            held = sorted(accounts.books[env].holdings.items())
            for number, (code, holding) in enumerate(held, start=1):
                if not holding.qty or (codes and code not in codes):
                    continue
                selling = sum((o.open_qty for o in accounts.orders if o.env == env and o.code == code and o.side == 2),
                              Decimal(0))  # fmt: skip
                last = accounts.last(code)
                p = answer.s2c.positionList.add()
                p.positionID, p.positionSide = number, common().PositionSide_Long
                p.code, p.name = code, accounts.instrument(code).name
                p.qty, p.canSellQty = float(holding.qty), float(holding.qty - selling)
                p.price, p.val = float(last), float(last * holding.qty)
                p.costPrice = p.averageCostPrice = float(holding.avg)
                p.plVal = float((last - holding.avg) * holding.qty)
                p.secMarket, p.trdMarket, p.currency = HK_SEC_MARKET, HK_TRD_MARKET, HKD
        return answer

    # --- orders ---------------------------------------------------------------------------------------

    def order_list(self, request: Any, conn_id: int) -> Any:
        answer = response(2201)
        env, _ = self._header(answer, request)
        wanted = request.c2s.filterConditions
        statuses = set(request.c2s.filterStatusList)
        for order in self.accounts.orders_of(env):
            if not (self.accounts.today(order) or order.status in (5, 10)):
                continue
            if wanted.codeList and order.code not in wanted.codeList:
                continue
            if wanted.orderIDExList and order.order_id not in wanted.orderIDExList:
                continue
            if statuses and order.status not in statuses:
                continue
            order_pb(answer.s2c.orderList.add(), order)
        return answer

    def history_orders(self, request: Any, conn_id: int) -> Any:
        answer = response(2221)
        env, _ = self._header(answer, request)
        wanted = request.c2s.filterConditions
        begin, end = _parse_time(wanted.beginTime), _parse_time(wanted.endTime)
        for order in self.accounts.orders_of(env):
            if (begin and order.created < begin) or (end and order.created > end + timedelta(days=1)):
                continue
            if wanted.codeList and order.code not in wanted.codeList:
                continue
            order_pb(answer.s2c.orderList.add(), order)
        return answer

    def place(self, request: Any, conn_id: int, *, store: bool = True) -> Any:
        answer = response(2202)
        env, acc_id = self._header(answer, request)
        c2s = request.c2s
        if c2s.secMarket != HK_SEC_MARKET:
            raise Refused("this account trades HK securities only")
        order = self.accounts.place(
            env=env,
            acc_id=acc_id,
            code=c2s.code,
            side=c2s.trdSide,
            order_type=c2s.orderType,
            qty=Decimal(str(c2s.qty)),
            price=Decimal(str(c2s.price)),
            remark=c2s.remark if c2s.HasField("remark") else None,
            time_in_force=c2s.timeInForce,
            store=store,
        )
        answer.s2c.orderID, answer.s2c.orderIDEx = order.number, order.order_id
        return answer

    def modify(self, request: Any, conn_id: int) -> Any:
        answer = response(2205)
        env, acc_id = self._header(answer, request)
        c2s = request.c2s
        if c2s.modifyOrderOp == common().ModifyOrderOp_Cancel and c2s.forAll:
            for order in self.accounts.orders_of(env):
                if order.open_qty:
                    self.accounts.cancel(env, acc_id, order.order_id)
            answer.s2c.orderID = 0
            return answer
        if c2s.modifyOrderOp == common().ModifyOrderOp_Cancel:
            order = self.accounts.cancel(env, acc_id, c2s.orderIDEx)
        elif c2s.modifyOrderOp == common().ModifyOrderOp_Normal:
            order = self.accounts.modify(env, acc_id, c2s.orderIDEx, Decimal(str(c2s.qty)), Decimal(str(c2s.price)))
        else:
            raise Refused("paper trading supports modify and cancel only")
        answer.s2c.orderID, answer.s2c.orderIDEx = order.number, order.order_id
        return answer

    def order_push(self, order: EmuOrder) -> Any:
        push = module_of(2208).Response()
        push.retType = 0
        push.s2c.header.trdEnv = order.env
        push.s2c.header.accID = order.acc_id
        push.s2c.header.trdMarket = HK_TRD_MARKET
        order_pb(push.s2c.order, order)
        return push

    # --- quotes ---------------------------------------------------------------------------------------

    def _codes(self, securities: Any) -> list[str]:
        codes: list[str] = []
        for sec in securities:
            if sec.market != HK_SEC_MARKET or sec.code not in mkt.INSTRUMENTS:
                raise Refused(f"unknown stock {sec.code}")
            codes.append(sec.code)
        return codes

    def static_info(self, request: Any, conn_id: int) -> Any:
        answer = response(3202)
        listed = request.c2s.securityList
        codes = [s.code for s in listed if s.code in mkt.INSTRUMENTS] if listed else sorted(mkt.INSTRUMENTS)
        for number, code in enumerate(codes, start=1):
            instrument = mkt.INSTRUMENTS[code]
            info = answer.s2c.staticInfoList.add().basic
            info.security.market, info.security.code = HK_SEC_MARKET, code
            info.id, info.lotSize, info.secType = number, instrument.lot, qot_common().SecurityType_Eqty
            info.name, info.listTime = instrument.name, "2004-06-16"
        return answer

    def snapshot(self, request: Any, conn_id: int) -> Any:
        answer = response(3203)
        now = self.accounts.clock.now()
        for code in self._codes(request.c2s.securityList):
            instrument = mkt.INSTRUMENTS[code]
            bid, ask, last = self.accounts.quote(code)
            opening = mkt.model_price(instrument, now.astimezone(mkt.HKT).replace(hour=9, minute=30, second=0))
            volume = mkt.volume_so_far(instrument, now)
            basic = answer.s2c.snapshotList.add().basic
            basic.security.market, basic.security.code = HK_SEC_MARKET, code
            basic.name, basic.type = instrument.name, qot_common().SecurityType_Eqty
            basic.isSuspend, basic.listTime = False, "2004-06-16"
            basic.lotSize, basic.priceSpread = instrument.lot, float(mkt.spread_at(last))
            basic.updateTime = stamp(now)
            basic.highPrice, basic.lowPrice = float(max(last, opening)), float(min(last, opening))
            basic.openPrice, basic.lastClosePrice, basic.curPrice = float(opening), float(instrument.base), float(last)
            basic.volume, basic.turnover = volume, float(volume * last)
            basic.turnoverRate = 0.1
            basic.askPrice, basic.bidPrice = float(ask), float(bid)
            basic.askVol, basic.bidVol = instrument.lot * 20, instrument.lot * 30
        return answer

    def history_kline(self, request: Any, conn_id: int) -> Any:
        answer = response(3103)
        c2s = request.c2s
        [code] = self._codes([c2s.security])
        instrument = mkt.INSTRUMENTS[code]
        answer.s2c.security.CopyFrom(c2s.security)
        limit = c2s.maxAckKLNum or 1000
        now = self.accounts.clock.now()
        if c2s.klType == KL_DAY:
            days = mkt.previous_weekdays(now.astimezone(mkt.HKT).date(), limit)
            for n, day in enumerate(days):
                drift = Decimal(1) + Decimal(n - len(days)) / 400
                close = mkt.to_spread(instrument.base * drift)
                opening = mkt.to_spread(close * Decimal("0.997"))
                k = answer.s2c.klList.add()
                k.time, k.isBlank = f"{day:%Y-%m-%d} 00:00:00", False
                k.openPrice, k.closePrice = float(opening), float(close)
                k.highPrice, k.lowPrice = float(max(opening, close) * Decimal("1.004")), float(min(opening, close))
                k.lastClosePrice, k.volume = float(instrument.base), instrument.avg_volume
            return answer
        minutes = 5 if c2s.klType == KL_5MIN else 1
        if c2s.klType not in (KL_1MIN, KL_5MIN):
            raise Refused("this K-line type is not emulated")
        starts = mkt.session_minutes_before(now, limit * minutes)
        groups = [starts[i : i + minutes] for i in range(0, len(starts), minutes)]
        for group in groups[-limit:]:
            prices = [mkt.model_price(instrument, m + timedelta(seconds=s)) for m in group for s in (0, 30, 59)]
            k = answer.s2c.klList.add()
            k.time, k.isBlank = (group[-1] + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"), False
            k.openPrice, k.closePrice = float(prices[0]), float(prices[-1])
            k.highPrice, k.lowPrice = float(max(prices)), float(min(prices))
            k.lastClosePrice, k.volume = float(instrument.base), instrument.avg_volume // 330 * len(group)
        return answer


def order_pb(target: Any, order: EmuOrder) -> None:
    target.trdSide, target.orderType, target.orderStatus = order.side, order.order_type, order.status
    target.orderID, target.orderIDEx = order.number, order.order_id
    target.code, target.name = order.code, mkt.INSTRUMENTS[order.code].name
    target.qty, target.price = float(order.qty), float(order.price)
    target.createTime, target.updateTime = stamp(order.created), stamp(order.updated or order.created)
    target.createTimestamp = order.created.timestamp()
    target.fillQty, target.fillAvgPrice = float(order.filled), float(order.avg_price)
    target.lastErrMsg = order.last_err
    target.secMarket, target.trdMarket, target.currency = HK_SEC_MARKET, HK_TRD_MARKET, HKD
    target.timeInForce = 0
    if order.remark is not None:
        target.remark = order.remark


def password_md5(password: str) -> str:
    return hashlib.md5(password.encode()).hexdigest()
