#!/usr/bin/env python3
"""TEST STAND-IN for an OpenAI-compatible LLM provider. Not OpenAI; no model runs here.

OpenAI, Google and every other LLM provider are unreachable from the test environments,
so the tests point an MLflow AI Gateway secret's ``api_base`` (or a judge) at this HTTP
server on loopback. It answers deterministically, in the shape of OpenAI's API:

- POST /v1/chat/completions (and /chat/completions): ``{"id", "object": "chat.completion",
  "created", "model" (the request's), "choices": [{"index": 0, "message": {"role":
  "assistant", "content"}, "finish_reason": "stop"}], "usage": {"prompt_tokens",
  "completion_tokens", "total_tokens"}}``. The content is
  ``stand-in reply to: <the last user message>``, so a test can tell its own request went
  through. With ``"stream": true`` the same reply comes as one ``chat.completion.chunk``
  server-sent event, then ``data: [DONE]``.
- GET /v1/models (and /models): ``{"object": "list", "data": [{"id": "stand-in-chat",
  "object": "model", ...}]}``.
- GET /health: 200 ``{"status": "ok"}``, without a key.

Every other request needs ``Authorization: Bearer KEY`` (the --api-key); else 401 in
OpenAI's error shape: ``{"error": {"message", "type": "invalid_request_error", "param":
null, "code": "invalid_api_key"}}``. Unknown paths: 404 in the same shape.

As an LLM judge backend. MLflow's judges (mlflow.genai.judges, MLflow 3.17) parse the
reply's content with ``json.loads`` after stripping Markdown fences
(adapters/gateway_adapter.py, litellm_adapter.py) and read ``response_dict["result"]`` and
``response_dict.get("rationale")``. They ask for it in one of three ways:
``response_format: {"type": "json_schema", "json_schema": {"schema": {"properties":
{"result": ..., "rationale": ...}}}}`` (the ``JudgeEvaluation`` model), the prompt text
"You *must* format your evaluation rating as a JSON object with the following fields (no
markdown)" followed by ``- result (str): ...`` lines (utils/prompt_utils.py), or a built-in
judge's "using only the following json format" with ``"result": "yes|no"``
(prompts/*.py). When a request does any of these, the content is a JSON object instead:

    {"result": "yes", "rationale": "stand-in judge: ..."}

with one key per property of a json_schema (booleans true, numbers 1, an enum's first
value, strings "yes" for result) and, for prompt fields typed ``bool``/``int``/``float``,
true/1/1.0 in place of "yes".

    python3 llm_standin.py [--host 127.0.0.1] [--port 0] --api-key KEY
    LLM_STANDIN_API_KEY=KEY python3 llm_standin.py ...   (keeps the key out of ps)

prints "LISTENING http://HOST:PORT" once it accepts connections, then one line per request
on stderr (method, path, status; never the key). Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = ("stand-in-chat",)
CREATED = 1700000000  # fixed, so answers are the same on every run
REPLY_PREFIX = "stand-in reply to: "
JUDGE_RATIONALE = "stand-in judge: a fixed verdict, no model was run"
# How MLflow's judges ask for JSON in the prompt (see the module docstring).
JUDGE_PROMPT_RE = re.compile(r"as a JSON object with the following fields|following json format", re.IGNORECASE)
# "- result (bool): The evaluation rating/result" (mlflow/genai/judges/utils/prompt_utils.py).
JUDGE_FIELD_RE = re.compile(r"^- (\w+) \(([^)]*)\):", re.MULTILINE)


def openai_error(message: str, code: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def text_of(content) -> str:
    """A message's text: a string, or OpenAI's list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


def _schema_value(name: str, schema: dict):
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return 1
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return JUDGE_RATIONALE if name == "rationale" else "yes"


def _prompt_value(name: str, type_name: str):
    if name == "rationale":
        return JUDGE_RATIONALE
    literal = re.search(r"Literal\[['\"]([^'\"]*)['\"]", type_name)
    if literal:
        return literal.group(1)
    return {"bool": True, "int": 1, "float": 1.0}.get(type_name.strip(), "yes")


def judge_answer(body: dict, prompt: str) -> dict | None:
    """The JSON verdict when the request asks for one as MLflow's judges do, else None."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        properties = schema.get("properties") or {"result": {}, "rationale": {}}
        return {name: _schema_value(name, spec or {}) for name, spec in properties.items()}
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return {"result": "yes", "rationale": JUDGE_RATIONALE}
    if JUDGE_PROMPT_RE.search(prompt):
        fields = dict(JUDGE_FIELD_RE.findall(prompt))
        answer = {name: _prompt_value(name, type_name) for name, type_name in fields.items()}
        answer.setdefault("result", "yes")
        answer.setdefault("rationale", JUDGE_RATIONALE)
        return answer
    return None


def chat_completion(body: dict) -> dict:
    """The deterministic answer to a chat completions request body."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts = [text_of(m.get("content")) for m in messages]
    last_user = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    verdict = judge_answer(body, "\n".join(texts))
    content = json.dumps(verdict) if verdict is not None else REPLY_PREFIX + last_user
    model = body.get("model") or MODELS[0]
    digest = hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode()).hexdigest()[:24]
    prompt_tokens = sum(count_tokens(t) for t in texts)
    completion_tokens = count_tokens(content)
    return {
        "id": f"chatcmpl-standin-{digest}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def as_chunk(completion: dict) -> dict:
    choice = completion["choices"][0]
    return {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
        "choices": [{"index": 0, "delta": choice["message"], "finish_reason": "stop"}],
        "usage": completion["usage"],
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "llm-standin/1"
    protocol_version = "HTTP/1.1"
    api_key: str

    def log_request(self, code="-", size="-"):
        """One line per request, written by _send (the default also prints the client address)."""

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        sys.stderr.write("llm-standin: " + (format % args) + "\n")

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._log(status)

    def _log(self, status: int) -> None:
        # The path only: the key travels in a header, and headers are never logged.
        sys.stderr.write(f"llm-standin: {self.command} {self.path.split('?')[0]} {status}\n")
        sys.stderr.flush()

    def _read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.api_key}":
            return True
        self._send(
            401,
            openai_error(
                "Incorrect API key provided. You can find your API key at the stand-in's --api-key.",
                "invalid_api_key",
            ),
        )
        return False

    def _route(self) -> str:
        path = self.path.split("?")[0].rstrip("/")
        return path[len("/v1") :] if path.startswith("/v1/") else path

    def do_GET(self):  # noqa: N802 - http.server's naming
        route = self._route()
        if route == "/health":
            return self._send(200, {"status": "ok"})
        if not self._authorized():
            return None
        if route == "/models":
            data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "stand-in"} for m in MODELS]
            return self._send(200, {"object": "list", "data": data})
        return self._send(404, openai_error(f"Unknown request URL: GET {self.path}.", "unknown_url"))

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self._read_json()
        if not self._authorized():
            return None
        if self._route() != "/chat/completions":
            return self._send(404, openai_error(f"Unknown request URL: POST {self.path}.", "unknown_url"))
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._send(400, openai_error("'messages' must be a non-empty array.", "invalid_value"))
        completion = chat_completion(body)
        if not body.get("stream"):
            return self._send(200, completion)
        events = f"data: {json.dumps(as_chunk(completion))}\n\ndata: [DONE]\n\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(events)))
        self.end_headers()
        self.wfile.write(events)
        self._log(200)
        return None


def make_server(host: str = "127.0.0.1", port: int = 0, api_key: str = "") -> ThreadingHTTPServer:
    if not api_key:
        raise ValueError("an API key is required")
    handler = type("BoundHandler", (Handler,), {"api_key": api_key})
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LLM_STANDIN_API_KEY"),
        help="the only key accepted as 'Authorization: Bearer KEY' (default: $LLM_STANDIN_API_KEY)",
    )
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key (or LLM_STANDIN_API_KEY) is required")
    server = make_server(args.host, args.port, args.api_key)
    host, port = server.server_address[:2]
    print(f"LISTENING http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
