"""The HTTP routes: a Starlette app over the served models' batchers.

    POST /translate   {"text": "..." | ["...", ...], "model"?, "beam"?, "n_best"?, "sample"?, ...}
    GET  /health      200 while the server runs (no key needed)
    GET  /models      each model's languages, vocabularies, decode section and checkpoint
    GET  /metrics     Prometheus text
    GET  /            the web page (page.html, page.js: only the public API above)

Handlers never search: they check a request, queue its texts with the model's batcher and await
the answer, so the event loop stays free for other clients while the worker thread searches.
Every refusal is a JSON object {"error": message, "limit"?: name, "allowed"?: value, "field"?}.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nmt.serve.auth import key_is_valid, presented_key
from nmt.serve.batcher import QueueFull, Stopped
from nmt.serve.limits import RequestError, ServeSettings, parse_request
from nmt.serve.metrics import Metrics
from nmt.serve.models import ServedModel, attention_for

logger = logging.getLogger("nmt")

# The page may run its own script and call its own origin, nothing else: no inline script, no
# other origin, never framed (clickjacking).
PAGE_HEADERS = {"content-security-policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
                                           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                           "form-action 'none'; frame-ancestors 'none'",
                "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


class ClientGone(Exception):
    """The client closed its connection before its answer."""


def build_app(models: dict[str, ServedModel], settings: ServeSettings, metrics: Metrics) -> Starlette:
    in_progress = [0]  # translate requests being answered (one event loop: no lock needed)

    def route(path: str, handler, methods=("GET",), *, protected: bool = True) -> Route:
        return Route(path, answered(path, handler, settings, metrics, protected, in_progress), methods=list(methods))

    async def translate(request: Request) -> Response:
        return await translate_request(request, models, settings, metrics)

    async def list_models(request: Request) -> Response:
        limits = {key: getattr(settings, key) for key in ("max_batch", "max_wait_ms", "max_queue", "max_texts",
                                                          "max_chars", "max_body_bytes", "request_timeout",
                                                          "max_beam", "max_samples")}
        return JSONResponse({"models": [model.info() for model in models.values()], "limits": limits,
                             "api_key_required": bool(settings.api_keys)})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(models)})

    async def show_metrics(request: Request) -> Response:
        return Response(metrics.text(), media_type=metrics.content_type)

    page = {name: (resources.files("nmt.serve") / name).read_bytes() for name in ("page.html", "page.js")}

    async def show_page(request: Request) -> Response:
        return Response(page["page.html"], media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def show_script(request: Request) -> Response:
        return Response(page["page.js"], media_type="text/javascript; charset=utf-8", headers=PAGE_HEADERS)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for model in models.values():
            model.batcher.start()
        watcher = asyncio.create_task(watch_loop(metrics))
        yield
        # uvicorn calls this after the last connection has its answer: the queues are empty now.
        watcher.cancel()
        for model in models.values():
            model.batcher.stop()

    routes = [route("/translate", translate, ("POST",)), route("/models", list_models),
              route("/metrics", show_metrics), route("/health", health, protected=False),
              route("/", show_page, protected=False), route("/page.js", show_script, protected=False)]
    middleware = [Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                             allow_headers=["content-type", "authorization", "x-api-key"], max_age=600)
                  ] if settings.cors_origins else []
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error})


async def watch_loop(metrics: Metrics, interval: float = 0.01) -> None:
    """Observe how late the event loop wakes from `interval` sleeps, for as long as the app runs."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(interval)
        metrics.loop_lag.observe(max(0.0, time.monotonic() - asked - interval))


async def http_error(request: Request, error: HTTPException) -> Response:
    """A path or method the API does not have, as JSON like every other refusal."""
    return JSONResponse({"error": f"{error.detail}: {request.method} {request.url.path}; the API is POST /translate, "
                                  f"GET /models, /health, /metrics (and the page at /)"},
                        status_code=error.status_code, headers=error.headers)


def answered(path: str, handler, settings: ServeSettings, metrics: Metrics, protected: bool, in_progress: list):
    """The handler with the API key check, the limit on translate requests in progress, refusals
    as JSON, and its answer counted and timed. Only POST /translate counts and is refused for
    load: /health, /models, /metrics and the page answer at once, so that a busy server can
    still be watched."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        started = time.monotonic()
        request.state.arrived = started
        counted, limited = False, path == "/translate"
        try:
            if limited and in_progress[0] >= settings.max_connections:
                raise RequestError(503, f"{in_progress[0]} translate requests are in progress, the most this server "
                                        f"takes at once (--max-connections): retry later", limit="max_connections",
                                   allowed=settings.max_connections,
                                   headers={"retry-after": str(settings.retry_after)})
            if limited:
                in_progress[0] += 1
                counted = True
            if protected and settings.api_keys and not key_is_valid(presented_key(request.headers), settings.api_keys):
                raise RequestError(401, "a valid API key is needed: send it as 'Authorization: Bearer KEY' or "
                                        "'X-API-Key: KEY'", headers={"www-authenticate": "Bearer"})
            response = await handler(request)
        except RequestError as e:
            response = JSONResponse(e.body(), status_code=e.status, headers=e.headers)
        except ClientGone:
            metrics.answered(path, "disconnected", time.monotonic() - started)
            return Response(status_code=499)  # no one reads it: the connection is closed
        except Exception:
            logger.exception(f"bug while answering {request.method} {path}")
            response = JSONResponse({"error": "internal error (a bug): see the server's log"}, status_code=500)
        finally:
            if counted:
                in_progress[0] -= 1
        metrics.answered(path, response.status_code, time.monotonic() - started)
        return response

    return wrapper


async def translate_request(request: Request, models: dict[str, ServedModel], settings: ServeSettings,
                            metrics: Metrics) -> Response:
    deadline = request.state.arrived + settings.request_timeout
    parsed = parse_request(await read_json(request, settings, deadline), settings)
    model = pick_model(models, parsed.model)
    options = model.options(parsed.changes, settings)
    if parsed.attention:
        model.check_attention()
    try:
        job = model.batcher.submit(parsed.texts, options, alone=options.sample)
    except QueueFull:
        raise RequestError(503, f"the queue of model {model.name} is full ({settings.max_queue} sentences, "
                                f"--max-queue): retry later", limit="max_queue", allowed=settings.max_queue,
                           headers={"retry-after": str(settings.retry_after)}) from None
    except Stopped:
        raise RequestError(503, "the server is shutting down", headers={"retry-after": str(settings.retry_after)})
    metrics.in_progress.inc()
    try:
        results = await wait_for(job, model, request, deadline, settings)
    finally:
        metrics.in_progress.dec()
    attention = await run_in_threadpool(attention_for, model, parsed.texts, results) if parsed.attention else None
    return JSONResponse(answer(model, parsed.texts, options, results, attention))


def pick_model(models: dict[str, ServedModel], name):
    if name is None:
        return next(iter(models.values()))
    if name not in models:
        raise RequestError(404, f"no model named {name!r}; this server has {', '.join(models)}", field="model")
    return models[name]


async def read_json(request: Request, settings: ServeSettings, deadline: float):
    """The body as JSON, within the size limit and the body timeout (a client that trickles its
    body holds a connection, not the server)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        # Also a CSRF guard: a page on another origin can POST text/plain without asking, but
        # application/json needs a CORS preflight, which this server refuses unless told otherwise.
        raise RequestError(415, "send the body as JSON with 'Content-Type: application/json'")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise _too_large(settings)
    timeout = min(settings.body_timeout, deadline - time.monotonic())
    try:
        raw = await asyncio.wait_for(_read_body(request, settings), timeout)
    except asyncio.TimeoutError:
        raise RequestError(408, f"the body took more than {timeout:.3g} seconds to arrive (--body-timeout)",
                           limit="body_timeout", allowed=settings.body_timeout) from None
    except ClientDisconnect:
        raise ClientGone() from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the body is not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the body is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # NaN, a 5000-digit number, nesting deeper than the parser goes
        raise RequestError(400, f"the body is not valid JSON: {str(e)[:100] or 'nested too deep'}") from None


async def _read_body(request: Request, settings: ServeSettings) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():  # counted as it comes: a chunked body declares no length
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise _too_large(settings)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(settings: ServeSettings) -> RequestError:
    return RequestError(413, f"the body is larger than {settings.max_body_bytes} bytes (--max-body-bytes)",
                        limit="max_body_bytes", allowed=settings.max_body_bytes)


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


async def wait_for(job, model: ServedModel, request: Request, deadline: float, settings: ServeSettings):
    """The job's results; its queued sentences dropped if the client leaves or time runs out."""
    result = asyncio.wrap_future(job.future)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({result, gone}, timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if result in done:
        return result.result()
    model.batcher.cancel(job)
    if gone in done:
        raise ClientGone()
    raise RequestError(503, f"no answer within {settings.request_timeout:g} s (--request-timeout): the "
                            f"server is busy, retry later", limit="request_timeout", allowed=settings.request_timeout,
                       headers={"retry-after": str(settings.retry_after)})


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body is read: the next ASGI message
    is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def answer(model: ServedModel, texts, options, results, attention=None) -> dict:
    """Each text's hypotheses, best first, with the scores search ranked them by (and, when asked,
    each one's attention weights: `attention[i][k]` belongs to results[i][k], see attention_for)."""
    def hypothesis(translation, weights) -> dict:
        found = {"text": translation.text, "score": translation.score, "log_prob": translation.log_prob,
                 "tokens": model.pieces(translation.tokens), "token_scores": list(translation.token_scores)}
        return found if weights is None else {**found, "attention": weights}

    used = {key: getattr(options, key) for key in ("beam", "n_best", "length_penalty", "word_penalty",
                                                   "no_repeat_ngram", "sample")}
    if options.sample:
        used.update({key: getattr(options, key) for key in ("temperature", "top_k", "top_p", "n_samples", "seed")})
    attention = attention or [[None] * len(found) for found in results]
    return {"model": model.name, "options": used,
            "translations": [{"source": text, "hypotheses": [hypothesis(t, weights) for t, weights in zip(found, maps)]}
                             for text, found, maps in zip(texts, results, attention)]}
