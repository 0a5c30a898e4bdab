"""Strict tool arguments: unknown ones are rejected, text PostgreSQL cannot store (a NUL, an unpaired
surrogate) is refused naming the argument, and every complaint is one line.

The SDK drops unknown arguments silently and reports validation errors as multi-line text, so a middleware
validates each ``tools/call`` against a model built from the tool's own signature (extras forbidden) first.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import ErrorDetails

from catalyst_mcp.domain.text import first_unstorable


def arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A model of a tool function's arguments, without the parameters the SDK fills, forbidding extras."""
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        annotation = hints[name]
        if _injected(annotation):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    model: type[BaseModel] = create_model(f"{fn.__name__}_arguments", __config__=config, **fields)
    return model


def _injected(annotation: Any) -> bool:
    """A parameter the SDK fills itself: the Context, or one resolved by ``Resolve(...)``."""
    if get_origin(annotation) is Annotated:
        return any(isinstance(meta, Resolve) for meta in get_args(annotation)[1:])
    return isinstance(annotation, type) and issubclass(annotation, Context)


def _describe(error: ErrorDetails) -> str:
    name = ".".join(str(part) for part in error["loc"]) or "arguments"
    name = repr(name)[1:-1][:64]  # a caller's key may hold line breaks; keep the complaint on one line
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown argument '{name}'"
    if kind == "missing":
        return f"missing argument '{name}'"
    message = error["msg"]
    message = message[0].lower() + message[1:] if message else "invalid value"
    return f"invalid {name}: {message}"


def one_line(tool: str, exc: ValidationError) -> str:
    seen: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        text = _describe(error)
        if text not in seen:
            seen.append(text)
    return f"{tool}: " + "; ".join(seen)


class StrictArguments:
    """Middleware: validate ``tools/call`` arguments before the SDK sees them."""

    def __init__(self, models: Mapping[str, type[BaseModel]]) -> None:
        self._models = models

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call" and ctx.params is not None:
            name = ctx.params.get("name")
            unstorable = first_unstorable(ctx.params.get("arguments"), "")
            if unstorable is not None:
                where, problem = unstorable
                return _error(f"{str(name)[:64]!s}: invalid {repr(where or 'arguments')[1:-1][:64]}: {problem}")
            model = self._models.get(name) if isinstance(name, str) else None
            if model is not None:
                arguments = ctx.params.get("arguments") or {}
                try:
                    if not isinstance(arguments, dict):
                        raise TypeError
                    model.model_validate(arguments)
                except ValidationError as exc:
                    return _error(one_line(str(name), exc))
                except TypeError:
                    return _error(f"{name}: arguments must be an object")
        return await call_next(ctx)


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
