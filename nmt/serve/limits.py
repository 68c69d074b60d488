"""The server's settings and what a request may ask for.

`ServeSettings` holds every limit the operator sets on the command line; `check()` runs before any
checkpoint loads, so a bad port or limit costs one line, not a minute of loading. `parse_request`
turns a request's JSON into the texts and decoding changes it asks for, or raises a `RequestError`
that carries the HTTP status and, for a limit, the limit's name: a client can tell "too long" from
"malformed" without reading the message.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any, Optional

from nmt.data.corpus import clean_line
from nmt.errors import NmtError


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"  # loopback: reaching the server from elsewhere is an explicit choice
    port: int = 8080
    max_batch: int = 32  # sentences per search batch; 1 turns batching off
    max_wait_ms: float = 10.0  # how long the first waiting sentence waits for others to join it
    max_queue: int = 1024  # sentences waiting per model; beyond it, 503 with Retry-After
    max_texts: int = 64  # texts per request
    max_chars: int = 2000  # characters per text
    max_body_bytes: int = 1_000_000
    request_timeout: float = 30.0  # seconds from a request's arrival to its answer
    body_timeout: float = 10.0  # seconds a client may take to send its body (a slow client)
    max_beam: int = 16
    max_samples: int = 16  # n_samples when sampling
    max_connections: int = 512  # translate requests in progress at once; beyond, 503 (uvicorn's: 2x + 16 connections)
    retry_after: int = 1  # seconds, in the Retry-After header of a 503
    api_keys: tuple[str, ...] = ()  # empty: no key needed
    cors_origins: tuple[str, ...] = ()  # empty: no cross-origin page may call the API
    threads: Optional[int] = None  # PyTorch's CPU threads; None: its default
    device: str = "auto"
    quantize: Optional[str] = None  # "int8": int8 weights on the CPU (nmt/decode/quantize.py)
    cuda_graphs: bool = True  # replay search steps as CUDA graphs (on a GPU; ignored on the CPU)

    def check(self) -> None:
        """Every rule between the settings, as one `NmtError` naming the flag."""
        _require(self.host.strip() != "", "--host must not be empty (127.0.0.1 serves this machine only)")
        _require(1 <= self.port <= 65535, f"--port must be from 1 to 65535, got {self.port}")
        for flag in ("max_batch", "max_queue", "max_texts", "max_chars", "max_body_bytes", "max_beam",
                     "max_samples", "max_connections", "retry_after"):
            _require(getattr(self, flag) >= 1, f"{_flag(flag)} must be at least 1, got {getattr(self, flag)}")
        for flag in ("request_timeout", "body_timeout"):
            value = getattr(self, flag)
            _require(math.isfinite(value) and value > 0, f"{_flag(flag)} must be a positive number of seconds, "
                                                        f"got {value}")
        _require(math.isfinite(self.max_wait_ms) and 0 <= self.max_wait_ms <= 10_000,
                 f"--max-wait-ms must be from 0 to 10000, got {self.max_wait_ms}")
        _require(self.max_texts <= self.max_queue, f"--max-texts {self.max_texts} cannot exceed --max-queue "
                                                   f"{self.max_queue}: a full request must fit in the queue")
        _require(self.threads is None or self.threads >= 1, f"--threads must be at least 1, got {self.threads}")
        for origin in self.cors_origins:
            _require(origin == "*" or (origin.startswith(("http://", "https://")) and origin.count("/") == 2),
                     f"--cors-origin {origin!r} must be * or a scheme and host, e.g. https://example.org")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise NmtError(message)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


class RequestError(Exception):
    """A request the server refuses: its status, a message, and the limit or field it broke."""

    def __init__(self, status: int, message: str, *, limit: Optional[str] = None, allowed: Any = None,
                 field: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.limit, self.allowed, self.field = status, limit, allowed, field
        self.headers = headers or {}

    def body(self) -> dict:
        body: dict[str, Any] = {"error": str(self)}
        if self.limit is not None:
            body.update(limit=self.limit, allowed=self.allowed)
        if self.field is not None:
            body["field"] = self.field
        return body


# The decoding settings a request may change, with their JSON types; the others (batch size,
# length limits, CUDA graphs) are the server's, since they decide what one request costs.
REQUEST_OPTIONS = {"beam": int, "n_best": int, "length_penalty": float, "word_penalty": float,
                   "no_repeat_ngram": int, "sample": bool, "temperature": float, "top_k": int, "top_p": float,
                   "n_samples": int, "seed": int}
REQUEST_KEYS = ("text", "model", "attention", *REQUEST_OPTIONS)


@dataclass(frozen=True)
class TranslateRequest:
    texts: tuple[str, ...]  # cleaned as the command line cleans a line
    model: Optional[str]  # None: the first model
    changes: dict  # option -> value, for Translator.options
    attention: bool = False  # each hypothesis's attention weights too (attention models only)


def parse_request(body: Any, settings: ServeSettings) -> TranslateRequest:
    """Check a /translate body's shape, types and size limits (not the model's own rules)."""
    if not isinstance(body, dict):
        raise RequestError(422, f"the body must be a JSON object like {{\"text\": \"...\"}}, not a "
                                f"{_json_type(body)}")
    for key in body:
        if key not in REQUEST_KEYS:
            close = difflib.get_close_matches(key, REQUEST_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(REQUEST_KEYS)}"
            raise RequestError(422, f"unknown key '{key}'{hint}", field=key)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(422, f"'model' must be a string, not a {_json_type(model)}", field="model")
    changes = {key: _typed(key, body[key], kind) for key, kind in REQUEST_OPTIONS.items() if key in body}
    attention = _typed("attention", body.get("attention", False), bool)
    return TranslateRequest(_texts(body.get("text"), settings), model, changes, attention)


def _texts(value: Any, settings: ServeSettings) -> tuple[str, ...]:
    if value is None:
        raise RequestError(422, "the body needs 'text': a string, or a list of strings", field="text")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise RequestError(422, "'text' must be a string or a list of strings", field="text")
    if not texts:
        raise RequestError(422, "'text' is an empty list: send at least one text", field="text")
    if len(texts) > settings.max_texts:  # before looking at each text: the list may be huge
        raise RequestError(413, f"{len(texts)} texts in one request; the server takes at most "
                                f"{settings.max_texts} (--max-texts): split the request", limit="max_texts",
                           allowed=settings.max_texts)
    cleaned = []
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise RequestError(413, f"text {i} has {len(text)} characters; the server takes at most "
                                    f"{settings.max_chars} (--max-chars)", limit="max_chars",
                               allowed=settings.max_chars)
        if not _encodable(text):  # a lone surrogate written as a JSON escape, "\ud800"
            raise RequestError(422, f"text {i} is not valid Unicode (a lone surrogate)", field="text")
        cleaned.append(clean_line(text))
        if not cleaned[-1]:
            raise RequestError(422, f"text {i} is empty (or only white space): nothing to translate", field="text")
    return tuple(cleaned)


def _typed(key: str, value: Any, kind: type) -> Any:
    """JSON's types to the option's: a whole number where an int is needed (true is not 1), any
    finite number where a float is."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2 ** 63
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        wanted = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise RequestError(422, f"'{key}' must be {wanted}, got {_json_type(value)} {json.dumps(value)[:40]}",
                           field=key)
    return float(value) if kind is float else value


def check_cost(options, settings: ServeSettings) -> None:
    """The server's caps on what one sentence may cost: beam and samples (n-best widens them)."""
    if options.sample:
        if options.n_samples > settings.max_samples:
            raise RequestError(422, f"n_samples {options.n_samples} is above the server's limit of "
                                    f"{settings.max_samples} (--max-samples)", limit="max_samples",
                               allowed=settings.max_samples)
    elif options.beam > settings.max_beam:
        raise RequestError(422, f"beam {options.beam} is above the server's limit of {settings.max_beam} "
                                f"(--max-beam; n_best widens the beam)", limit="max_beam", allowed=settings.max_beam)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
