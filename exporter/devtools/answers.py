"""What the simulator answers, as the provider would shape it: text, `n` choices, a call
of the tool the request offers (or forces), and JSON that fits the request's schema, so
clients that parse structured output (instructor, the SDKs' parse helpers) work against
the demo as against the provider."""

from __future__ import annotations

import json
import uuid


def example(schema: dict, defs: dict | None = None, depth: int = 0):
    """A value that fits a JSON schema: the first of an enum, a const, the default, else
    one of its type (a string, 1, true, an object of every property)."""
    defs = defs if defs is not None else {**schema.get("$defs", {}),
                                          **schema.get("definitions", {})}
    if "$ref" in schema and depth < 8:
        return example(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, depth + 1)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example(schema[key][0], defs, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind == "object":
        return {name: example(sub, defs, depth + 1)
                for name, sub in (schema.get("properties") or {}).items()} if depth < 8 else {}
    if kind == "array":
        return [example(schema.get("items") or {}, defs, depth + 1)] * max(
            schema.get("minItems", 1), 1) if depth < 8 else []
    return {"string": "demo", "integer": 1, "number": 1.5, "boolean": True,
            "null": None}.get(kind, "demo")


def _tool(tools: list, choice) -> dict | None:
    """The function the answer calls: the one forced, else the first offered (unless the
    request says none)."""
    functions = [t.get("function", t) for t in tools if isinstance(t, dict)]
    if not functions or choice == "none":
        return None
    if isinstance(choice, dict):  # {"type": "function", "function": {"name": ...}}
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        return next((f for f in functions if f.get("name") == name), functions[0])
    return functions[0]


def chat_message(body: dict, text: str) -> tuple[dict, str]:
    """A chat completion's message and finish reason for the request `body`."""
    tool = _tool(body.get("tools") or [], body.get("tool_choice"))
    if tool is not None:
        call = {"id": "call_" + uuid.uuid4().hex[:24], "type": "function", "function": {
            "name": tool.get("name", "tool"),
            "arguments": json.dumps(example(tool.get("parameters") or {}))}}
        return {"role": "assistant", "content": None, "tool_calls": [call],
                "refusal": None}, "tool_calls"
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        text = json.dumps(example((fmt.get("json_schema") or {}).get("schema") or {}))
    elif fmt.get("type") == "json_object":
        text = json.dumps({"answer": text.strip()})
    return {"role": "assistant", "content": text, "refusal": None}, "stop"


def chat_deltas(message: dict, pieces: int) -> list[dict]:
    """The message as a stream's deltas: its text word by word, or its tool call's name,
    then its arguments in `pieces` parts."""
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        arguments = call["function"]["arguments"]
        size = max(len(arguments) // max(pieces, 1), 1)
        return [{"role": "assistant", "content": None, "tool_calls": [{
            "index": 0, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""}}]}] + [
            {"tool_calls": [{"index": 0, "function": {"arguments": arguments[i:i + size]}}]}
            for i in range(0, len(arguments), size)]
    words = message["content"].split(" ")
    return [{"role": "assistant", "content": ""}] + [
        {"content": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)]


def anthropic_content(body: dict, text: str) -> tuple[list[dict], str]:
    """A message's content blocks and stop reason: a tool_use when the request forces a
    tool (tool_choice any or tool, as instructor does), else text."""
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    if tools and choice.get("type") in ("any", "tool"):
        tool = next((t for t in tools if t.get("name") == choice.get("name")), tools[0])
        return [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24],
                 "name": tool.get("name", "tool"),
                 "input": example(tool.get("input_schema") or {})}], "tool_use"
    return [{"type": "text", "text": text}], "end_turn"


def response_events(done: dict, words: list[str]) -> list[dict]:
    """A Responses stream: every event the API sends, in order (SDK stream helpers read the
    item and part events too), for the finished response `done` of one message."""
    [item] = done["output"]
    [part] = item["content"]
    start = {**done, "status": "in_progress", "output": [], "usage": None}
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    kinds = [("response.created", {"response": start}),
             ("response.in_progress", {"response": start}),
             ("response.output_item.added", {"output_index": 0, "item": {
                 **item, "status": "in_progress", "content": []}}),
             ("response.content_part.added", {**at, "part": {**part, "text": ""}}),
             *(("response.output_text.delta", {**at, "delta": w, "logprobs": []})
               for w in words),
             ("response.output_text.done", {**at, "text": part["text"], "logprobs": []}),
             ("response.content_part.done", {**at, "part": part}),
             ("response.output_item.done", {"output_index": 0, "item": item}),
             ("response.completed", {"response": done})]
    return [{"type": kind, "sequence_number": n, **fields}
            for n, (kind, fields) in enumerate(kinds)]
