"""The output schemas the tools publish, in the shape a client validates cheaply and reads plainly: the
serialised form (decimals and times are strings), references to shared definitions inlined, and unions of
plain types written as one ``type`` list instead of ``anyOf`` — the same constraints, a fraction of the work
for a client such as the MCP SDK's, which validates every structured result against the tool's schema.

An object marked ``x-keys-only`` (the items of long lists, like check_risk's 24 checks) is published as its
required keys, with the value types in its description: validating each item's every value costs a client
more than the rest of the call."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

_DROPPED = frozenset({"$defs", "title"})


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The published output schema of a tool returning ``model``."""
    return flatten(TypeAdapter(model).json_schema(mode="serialization"))


def flatten(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``$ref``s to its ``$defs`` inlined and unions of bare types collapsed."""
    definitions = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            inlined = walk(definitions[ref.removeprefix("#/$defs/")])
            return {**inlined, **{k: walk(v) for k, v in node.items() if k != "$ref" and k not in _DROPPED}}
        if node.get("x-keys-only"):
            return {
                "type": "object",
                "required": node.get("required", []),
                **({"description": node["description"]} if "description" in node else {}),
            }
        out = {k: walk(v) for k, v in node.items() if k not in _DROPPED}
        branches = out.get("anyOf")
        if isinstance(branches, list) and all(_bare_type(b) for b in branches):
            types: list[str] = []
            for branch in branches:
                for t in branch["type"] if isinstance(branch["type"], list) else [branch["type"]]:
                    if t not in types:
                        types.append(t)
            del out["anyOf"]
            out["type"] = types[0] if len(types) == 1 else types
        return out

    flat = walk(schema)
    assert isinstance(flat, dict)
    return flat


def _bare_type(branch: Any) -> bool:
    return isinstance(branch, dict) and set(branch) == {"type"}
