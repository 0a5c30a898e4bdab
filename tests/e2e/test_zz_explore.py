import json
import pytest
pytestmark = pytest.mark.anyio
async def test_explore(client):
    print("PROTO", client.protocol_version)
    print("INSTR", client.instructions)
    tools = await client.list_tools()
    for t in tools.tools:
        print(t.name, t.annotations, bool(t.output_schema))
    r = await client.call_tool("workflow_status", {})
    print(r.is_error, r.structured_content)
    r = await client.call_tool("start_cycle", {})
    print(r.is_error, json.dumps(r.structured_content, indent=1))
    cid = r.structured_content["cycle_id"]
    r = await client.call_tool("get_portfolio", {"cycle_id": cid})
    print(r.structured_content)
    r = await client.call_tool("scan_market", {"cycle_id": cid, "limit": 3})
    print(r.structured_content)
    r = await client.call_tool("get_quote", {"cycle_id": cid, "symbol": "AAPL"})
    print(r.structured_content)
    ask = r.structured_content["ask"]
    r = await client.call_tool("check_risk", {"cycle_id": cid, "symbol": "AAPL", "side": "buy", "quantity": 10, "order_type": "market", "stop_loss": "150"})
    print(json.dumps(r.structured_content, indent=1))
    r = await client.call_tool("execute_trade", {"cycle_id": cid, "approval_id": r.structured_content["approval_id"]})
    print(json.dumps(r.structured_content, indent=1))
    r = await client.call_tool("check_risk", {"cycle_id": cid, "symbol": "AAPL", "side": "buy", "quantity": 1000000, "order_type": "market", "stop_loss": "150"})
    print(json.dumps(r.structured_content, indent=1))
    for args in [{"quantity": 0}, {"quantity": -5}, {"quantity": "NaN"}, {"quantity": "abc"}, {"quantity": "1e400"}, {"symbol": "AAPL!!"}, {"symbol": ""}, {"bogus": 1}, {"order_type": "limit"}, {"symbol": "ZZZZ"}, {"cycle_id": "nope"}, {"cycle_id": "us_20261125_100000_abcdef"}, {"stop_loss": None}]:
        base = {"cycle_id": cid, "symbol": "AAPL", "side": "buy", "quantity": 10, "order_type": "market", "stop_loss": "150"}
        base.update(args)
        if args.get("stop_loss", 1) is None: del base["stop_loss"]
        r = await client.call_tool("check_risk", base)
        print(args, r.is_error, r.content[0].text[:300] if r.is_error else [c["rule"] for c in r.structured_content["checks"] if not c["passed"]])
    r = await client.call_tool("start_cycle", {})
    print(r.is_error, r.content[0].text)
    r = await client.call_tool("execute_trade", {"approval_id": "abc"})
    print(r.is_error, r.content[0].text)
    r = await client.call_tool("log_decision", {"cycle_id": cid, "decision": "trade", "reasoning": "x", "symbol": "AAPL"})
    print(r.structured_content)
    r = await client.call_tool("complete_cycle", {"cycle_id": cid})
    print(json.dumps(r.structured_content, indent=1, ensure_ascii=False))
