"""``artwalk studio``: serve the timeline studio (FastAPI under uvicorn).

Imports nothing of the web stack until the command runs, so ``artwalk --help`` works
without it; a missing FastAPI or uvicorn is one line that says what to install, and so are a
ROOT that is not a folder and a port that another server holds (the socket is bound before
the app is made, and the "open" line names the port it got: ``--port 0`` takes a free one).
"""

from __future__ import annotations

import argparse
import errno
import logging
import secrets
import socket
from pathlib import Path

from artwalk.cli import Parser, add_common_flags, run_cli
from artwalk.errors import ConfigError

log = logging.getLogger("artwalk")

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(args: argparse.Namespace) -> None:
    if args.host not in LOCAL_HOSTS and not args.token:
        raise ConfigError(f"--host {args.host} lets other machines in: give --token TOKEN too (every request then "
                          f"needs it), for example --token {secrets.token_urlsafe(16)}")
    if not 0 < args.max_upload_mb <= 4096:
        raise ConfigError(f"--max-upload-mb must be in (0, 4096], got {args.max_upload_mb:g}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [0, 65535], got {args.port}")
    if (Path(args.root).resolve() / "cli.py").resolve() == Path(__file__).resolve():
        raise ConfigError(f"ROOT {args.root} is the studio's own source folder (this is the repository): give "
                          "another ROOT, for example `artwalk studio ~/walks`")
    root = Path(args.root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"ROOT {root} is a file: give the folder of the studio's projects (made if missing)")
    try:
        import uvicorn

        from studio.app import create_app
    except ImportError as exc:
        raise ConfigError(f"the studio needs {exc.name}: pip install -r requirements/studio.txt") from None
    with _listen(args.host, args.port) as sock:
        _make_folder(root)
        app = create_app(root, token=args.token, max_upload_mb=args.max_upload_mb)
        host = f"[{args.host}]" if ":" in args.host else args.host
        where = f"http://{host}:{sock.getsockname()[1]}/" + (f"?token={args.token}" if args.token else "")
        log.info("artwalk studio: projects in %s; open %s", root.resolve(), where)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning" if args.quiet else "info"))
        server.run(sockets=[sock])


def _make_folder(root: Path) -> None:
    """ROOT made if missing; one line if it cannot be (a file on its way, no permission)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"ROOT {root}: cannot make the projects folder ({exc.strerror or exc})") from None


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` for the server (as uvicorn binds one); one line if
    the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use by another server: stop it, or give another "
                              "--port") from None
        raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path, nargs="?", default=Path("studio"), metavar="ROOT",
                   help="folder of the studio's projects, one run folder each (default ./studio)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; any other needs --token)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    p.add_argument("--token", help="a secret every request must carry (the page keeps it in a cookie once opened "
                   "with ?token=TOKEN; scripts send Authorization: Bearer TOKEN)")
    p.add_argument("--max-upload-mb", type=float, default=50, metavar="MB",
                   help="largest request body, an uploaded image included (default 50; larger gets 413)")
    add_common_flags(p)


def add_command(sub) -> None:
    p = sub.add_parser("studio", help="the timeline web studio: keyframes in the browser, re-rendering what changed",
                       description="Serve the timeline studio: put images or prompt keyframes on a timeline in the "
                       "browser, set durations, engines and models, and render the walk; only what changed since "
                       "the last render is made again. The HTTP API is documented at /openapi.json. State lives in "
                       "ROOT, so a restart loses nothing.")
    add_arguments(p)
    p.set_defaults(func=serve)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m studio", description="Serve the artwalk timeline studio.")
    add_arguments(p)
    return run_cli(serve, p, argv)
