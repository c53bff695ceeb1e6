"""A small OpenAI-compatible HTTP server for the labeling tests and benchmark.

It is a real server (stdlib ThreadingHTTPServer on 127.0.0.1, free port, background thread), so the
tests exercise the real `openai` client, its HTTP stack and its error mapping. Its answers are
deterministic functions of the prompt:
- label request (prompt asks for JSON): the name comes from the first MovieLens genre word in the
  user message, e.g. {"name": "Comedy movies", "description": "..."};
- judge request (prompt has "Recommended next:"): "8" if the probe text shares a genre word with the
  explanation, else "0".
Scriptable behaviour: per-request delay, failing the first N chat requests with a status code (and a
Retry-After header), malformed JSON for given latents (once or always), a `usage`-free mode, 200 answers
that are HTML pages, overlong labels, a record of every request body, and the tokens it served (what a
provider would bill).
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
          "Western"]
_GENRE_RE = re.compile(r"(?<![\w-])(" + "|".join(re.escape(g) for g in GENRES) + r")(?![\w-])", re.I)
_CANON = {g.lower(): g for g in GENRES}


def genres_in(text: str) -> list[str]:
    """Genre words of `text`, in order of appearance, canonical spelling."""
    return [_CANON[m.group(1).lower()] for m in _GENRE_RE.finditer(text)]


class FakeLLM:
    """State and script of the server; tests change the attributes between runs."""

    def __init__(self, api_key: str = "test-key-1234567890", models=("test-model",), delay: float = 0.0):
        self.api_key = api_key
        self.models = set(models)
        self.delay = delay
        self.fail_first = 0                 # fail this many upcoming chat requests ...
        self.fail_status = 500              # ... with this status
        self.retry_after: float | None = 0.01   # ... and this Retry-After (seconds; None: no header)
        self.malformed_once: set[int] = set()    # latents whose first (non-repair) answer is bad JSON
        self.malformed_always: set[int] = set()  # latents whose every answer is bad JSON
        self.omit_usage = False
        self.html = False                   # answer 200 with an HTML page (a proxy's login or error page)
        self.reply_chars = 0                # > 0: pad each label's description to this many characters
        self.tokens = 0                     # prompt + completion tokens of every answer served
        self.requests: list[dict] = []      # every chat body that passed auth and model checks
        self.n_http = 0                     # every chat POST, failed ones included
        self.in_flight = 0
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "FakeLLM":
        handler = type("Handler", (_Handler,), {"llm": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False   # idle keep-alive connections must not block shutdown
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being handled (e.g. those of a client that was just killed)."""
        end = time.time() + timeout
        while self.in_flight and time.time() < end:
            time.sleep(0.01)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.n_http = 0
            self.tokens = 0
            self.fail_first = 0
            self.fail_status = 500
            self.retry_after = 0.01
            self.malformed_once.clear()
            self.malformed_always.clear()
            self.omit_usage = False
            self.html = False
            self.reply_chars = 0

    # -- answers -----------------------------------------------------------------------------------
    def answer(self, body: dict) -> str:
        msgs = body["messages"]
        users = [m["content"] for m in msgs if m["role"] == "user"]
        last = users[-1]
        if "Recommended next:" in last:
            head, _, probe = last.partition("\nHistory")
            return "8" if set(genres_in(head)) & set(genres_in(probe)) else "0"
        m = re.search(r"Latent (\d+)", users[0])
        latent = int(m.group(1)) if m else -1
        is_repair = any(mm["role"] == "assistant" for mm in msgs)
        if latent in self.malformed_always or (latent in self.malformed_once and not is_repair):
            return '{"name": "Broken answer", "description": "no closing brace'
        found = genres_in(users[0])
        genre = found[0] if found else "Mixed"
        desc = f"Sequences led by {genre} titles."
        return json.dumps({"name": f"{genre} movies", "description": desc.ljust(self.reply_chars, "!")})


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-answer (a killed run) is expected; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as real servers do
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would add ~40 ms
    llm: FakeLLM

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, type_: str, code: str | None, headers: dict | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": type_, "param": None, "code": code}}, headers)

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if auth == f"Bearer {self.llm.api_key}":
            return True
        # Echo the key it got, unmasked, so the tests can check the client never leaks it.
        given = auth.removeprefix("Bearer ")
        self._error(401, f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key")
        return False

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            return self._error(404, f"no route {self.path}", "invalid_request_error", None)
        if self._authorised():
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in sorted(self.llm.models)]
            self._send(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        with self.llm.lock:
            self.llm.in_flight += 1
        try:
            self._post()
        finally:
            with self.llm.lock:
                self.llm.in_flight -= 1

    def _post(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        llm = self.llm
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no route {self.path}", "invalid_request_error", None)
        with llm.lock:
            llm.n_http += 1
        if not self._authorised():
            return
        if body.get("model") not in llm.models:
            return self._error(404, f"The model `{body.get('model')}` does not exist.", "invalid_request_error",
                               "model_not_found")
        if llm.delay:
            time.sleep(llm.delay)
        with llm.lock:
            fail = llm.fail_first > 0
            if fail:
                llm.fail_first -= 1
            else:
                llm.requests.append(body)
        if fail:
            code = "rate_limit_exceeded" if llm.fail_status == 429 else None
            headers = {} if llm.retry_after is None else {"Retry-After": str(llm.retry_after)}
            return self._error(llm.fail_status, "scripted failure", "server_error", code, headers)
        if llm.html:
            page = b"<html><body><h1>Please sign in</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        content = llm.answer(body)
        prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
        completion_tokens = len(content) // 4 + 1
        with llm.lock:
            llm.tokens += prompt_tokens + completion_tokens
        out = {
            "id": f"chatcmpl-{len(llm.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": "stop"}],
        }
        if not llm.omit_usage:
            out["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens}
        self._send(200, out)


if __name__ == "__main__":  # manual use: python tests/llm_server.py  (Ctrl-C to stop)
    srv = FakeLLM(delay=0.05).start()
    print(f"OPENAI_BASE_URL={srv.base_url} OPENAI_API_KEY={srv.api_key}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()
