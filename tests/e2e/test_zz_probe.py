import pytest
pytestmark = pytest.mark.anyio
async def test_probe(tools, book, protocol_mode):
    if protocol_mode != "auto": return
    cid = await tools.start_cycle()
    for q in ["1e400", "1e30", "1e28", "1e27", "12345678901234567890123456789", "0.5", "1e-30", 1e300]:
        r = await tools.client.call_tool("check_risk", {"symbol": "AAPL", "side": "buy", "quantity": q, "order_type": "market", "stop_loss": "100", "cycle_id": cid})
        print(q, r.is_error, r.content[0].text[:200] if r.is_error else [c["rule"] for c in r.structured_content["checks"] if not c["passed"]])
    print(await book.counts())
    for p in ["1e400", "1e-30", "0.001"]:
        r = await tools.client.call_tool("check_risk", {"symbol": "AAPL", "side": "buy", "quantity": 1, "order_type": "limit", "limit_price": p, "stop_loss": "100", "cycle_id": cid})
        print("limit", p, r.is_error, r.content[0].text[:200] if r.is_error else [c["rule"] for c in r.structured_content["checks"] if not c["passed"]])
