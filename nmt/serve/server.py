"""`nmt serve`: check, load, bind, serve, and stop without dropping an accepted request.

The order matters to whoever starts the server: settings and names are checked first, and the
address is tried (bound and released, never listened on), so a bad flag or a port in use costs one
line in well under a second; then every checkpoint loads, then the port is bound and listened on.
So a server that fails to start never had a port a client could reach.

Stopping (SIGTERM, or Ctrl-C): uvicorn closes the listening socket (new connections are refused),
lets every request already received finish (their sentences are still queued with the batchers,
which go on searching), closes idle connections, and only then runs the app's shutdown, which
ends the batchers' threads. A stop that was asked for exits 0: it is how a server's run ends.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket

from nmt.errors import NmtError
from nmt.serve.limits import ServeSettings
from nmt.serve.models import parse_checkpoint

logger = logging.getLogger("nmt")


def serve(checkpoints: list[str], settings: ServeSettings) -> None:
    """Serve the checkpoints (each `PATH` or `NAME=PATH`) until SIGTERM or SIGINT."""
    settings.check()
    specs = [parse_checkpoint(spec) for spec in checkpoints]
    names = [name for name, _ in specs]
    for name in names:
        if names.count(name) > 1:
            raise NmtError(f"two models are named {name!r}: name them with --checkpoint NAME=PATH")
    bind(settings.host, settings.port).close()  # a port in use is one line now, not after loading
    try:  # after the cheap checks; these imports take most of a second
        import uvicorn

        from nmt.serve.app import build_app
        from nmt.serve.metrics import Metrics
    except ImportError as e:
        raise NmtError(f"nmt serve needs {e.name}, which is not installed: pip install 'nmt[serve]' "
                       f"(starlette, uvicorn, prometheus_client)") from None
    from nmt.serve.models import load_models

    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    metrics = Metrics(settings.max_batch)
    models = load_models(specs, settings, metrics)
    listening = bind(settings.host, settings.port)
    config = uvicorn.Config(build_app(models, settings, metrics), lifespan="on", log_level="warning",
                            # requests beyond --max-connections get the app's JSON 503; uvicorn's own
                            # plain-text 503 stays as a backstop for idle connections piling up
                            access_log=False, limit_concurrency=2 * settings.max_connections + 16,
                            # long enough for every accepted request to get its answer or its timeout
                            timeout_graceful_shutdown=int(settings.body_timeout + settings.request_timeout) + 5)
    server = uvicorn.Server(config)
    warn_if_open(settings)
    logger.info(f"serving {', '.join(models)} on http://{url_host(settings.host)}:{settings.port}/ "
                f"(batches of up to {settings.max_batch}, waiting up to {settings.max_wait_ms:g} ms)")
    stops = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        # uvicorn handles the signal, then hands it to the handler it found: this one notes it,
        # where the default one would kill the process (SIGTERM) or raise KeyboardInterrupt.
        signal.signal(sig, lambda number, frame: stops.append(signal.Signals(number).name))
    server.run(sockets=[listening])
    if not server.started:
        raise NmtError("the server did not start (see the message above)")
    logger.info(f"stopped{' by ' + stops[0] if stops else ''}: every accepted request was answered")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use or an unknown host is one line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise NmtError(f"cannot listen on --host {host}: {e.strerror}") from None
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
    try:
        listening.bind(address)
    except OSError as e:
        listening.close()
        raise NmtError(f"cannot listen on {host}:{port}: {e.strerror}: choose another --port "
                       f"(or stop what is using it)") from None
    listening.set_inheritable(True)
    return listening


def warn_if_open(settings: ServeSettings) -> None:
    if not settings.api_keys and not is_loopback(settings.host):
        logger.warning(f"warning: serving on {settings.host} without API keys: anyone who can reach this port can "
                       f"use the models (--api-keys-file or NMT_SERVE_API_KEYS)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

