"""The published output schemas: the serialised shapes (decimals and times as strings), no references, unions
of plain types as one type list, and long lists' items as their keys — and still strict where they speak."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from catalyst_mcp.server import models as m
from catalyst_mcp.server.schemas import flatten, output_schema

OUTPUTS = [
    obj for obj in vars(m).values() if isinstance(obj, type) and issubclass(obj, m.Out) and obj.__name__.endswith("Out")
]


def test_a_reference_is_inlined_and_a_union_of_plain_types_becomes_a_type_list() -> None:
    schema = {
        "$defs": {"Side": {"enum": ["buy", "sell"], "title": "Side", "type": "string"}},
        "properties": {
            "side": {"$ref": "#/$defs/Side", "description": "which way"},
            "price": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Price"},
            "either": {"anyOf": [{"type": "string"}, {"enum": [1]}]},
        },
        "type": "object",
    }
    assert flatten(schema) == {
        "properties": {
            "side": {"enum": ["buy", "sell"], "type": "string", "description": "which way"},
            "price": {"type": ["string", "null"]},
            "either": {"anyOf": [{"type": "string"}, {"enum": [1]}]},
        },
        "type": "object",
    }


@pytest.mark.parametrize("model", OUTPUTS, ids=lambda model: model.__name__)
def test_every_output_schema_is_valid_and_free_of_references(model: type[m.Out]) -> None:
    schema = output_schema(model)
    Draft202012Validator.check_schema(schema)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    assert '"number"' not in text, "decimals are published as the strings they are sent as"


def risk_answer(**changes: Any) -> dict[str, Any]:
    check = {"rule": "lot_size", "passed": True, "limit": "1", "actual": "10", "message": "ok"}
    answer = {
        "approved": True,
        "approval_id": "0b9a3f1e-3c5d-4b8e-9a51-1f2a3b4c5d6e",
        "expires_at": "2026-11-25T15:01:00+00:00",
        "intent": {
            "symbol": "AAPL",
            "side": "buy",
            "quantity": "10",
            "order_type": "market",
            "limit_price": None,
            "stop_loss": "180.5",
            "take_profit": None,
        },
        "checks": [check] * 24,
        "reasons": [],
        "suggested_quantity": None,
        "limits_version": "default-0123456789",
    }
    return {**answer, **changes}


def test_the_check_risk_schema_takes_its_answer_and_refuses_one_missing_a_key_or_mistyped() -> None:
    validator = Draft202012Validator(output_schema(m.RiskOut))
    assert list(validator.iter_errors(risk_answer())) == []
    no_message = {"rule": "lot_size", "passed": True, "limit": None, "actual": None}
    assert list(validator.iter_errors(risk_answer(checks=[no_message])))
    assert list(validator.iter_errors(risk_answer(approved="yes")))
    assert list(validator.iter_errors(risk_answer(intent={**risk_answer()["intent"], "side": "short"})))
