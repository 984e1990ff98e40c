"""``artwalk studio``: serve the timeline studio (FastAPI under uvicorn).

Imports nothing of the web stack until the command runs, so ``artwalk --help`` works
without it; a missing FastAPI or uvicorn is one line that says what to install, and so are a
ROOT that is not a folder, a port that another server holds (the socket is bound before
the app is made, and the "open" line names the port it got: ``--port 0`` takes a free one)
and a ROOT that another studio serves (``ROOT/.studio.lock`` is held while the server runs).

The token is read from ``$ARTWALK_STUDIO_TOKEN`` or ``--token-file FILE``, never from the
command line (which every local user can read in ``/proc/*/cmdline``), and never logged:
the "open" line leaves it out, and the access log shows ``token=…``. A ``--host`` other
than this machine's with no token gets one made for the run, shown once on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import secrets
import socket
import stat
import sys
from pathlib import Path
from typing import Iterator

from artwalk.cli import Parser, add_common_flags, run_cli
from artwalk.errors import ConfigError, RunFolderBusyError
from artwalk.runfolder import file_lock
from studio.guard import check_token  # plain Python: the web stack is imported only when the command runs

log = logging.getLogger("artwalk")

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "ARTWALK_STUDIO_TOKEN"
LOCK = ".studio.lock"


def serve(args: argparse.Namespace) -> None:
    if args.token is not None:
        raise ConfigError(f"--token on the command line can be read by every user of this machine: put it in "
                          f"${TOKEN_ENV}, or in a file only you can read and give --token-file FILE")
    token, made = _token(args)
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
    if args.models is not None and not args.models.is_dir():
        raise ConfigError(f"--models {args.models}: not a folder (give the folder whose entries projects may name as "
                          "their models)")
    try:
        import uvicorn

        from studio.app import create_app
    except ImportError as exc:
        raise ConfigError(f"the studio needs {exc.name}: pip install -r requirements/studio.txt") from None
    with _listen(args.host, args.port) as sock:
        _make_folder(root)
        with _served(root):
            port = sock.getsockname()[1]
            app = create_app(root, token=token, max_upload_mb=args.max_upload_mb, port=port,
                             hosts=[args.host, *args.allow_host], models=args.models)
            host = f"[{args.host}]" if ":" in args.host else args.host
            where = f"http://{host}:{port}/"
            if made:  # shown once, to the person who started it; never logged
                sys.stdout.write(f"open {where}?token={token} (a token made for this run: set ${TOKEN_ENV} or "
                                 "--token-file to keep one)\n")
                sys.stdout.flush()
            log.info("artwalk studio: projects in %s; open %s%s", root.resolve(), where,
                     " with ?token=TOKEN once" if token and not made else "")
            config = uvicorn.Config(app, log_level="warning" if args.quiet else "info")
            logging.getLogger("uvicorn.access").addFilter(_HideToken())  # after the Config set up uvicorn's logging
            server = uvicorn.Server(config)
            server.run(sockets=[sock])


def _token(args: argparse.Namespace) -> tuple[str | None, bool]:
    """(the token, whether it was made here): from ``--token-file`` or ``$ARTWALK_STUDIO_TOKEN``;
    one made for the run when ``--host`` lets other machines in and neither is given."""
    env = os.environ.get(TOKEN_ENV)
    if args.token_file is not None and env is not None:
        raise ConfigError(f"--token-file {args.token_file} and ${TOKEN_ENV}: give one of them")
    if args.token_file is not None:
        token = _read_token(args.token_file)
    elif env is not None:
        token = env.strip()
        if not token:
            raise ConfigError(f"${TOKEN_ENV} is set but empty: set it to a secret of 16 characters or more (for "
                              "example `openssl rand -hex 16`), or unset it")
    elif args.host not in LOCAL_HOSTS:
        return secrets.token_urlsafe(24), True
    else:
        return None, False
    try:
        check_token(token)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return token, False


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: cannot read it ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"--token-file {path}: not a regular file")
        if info.st_mode & stat.S_IROTH:
            raise ConfigError(f"--token-file {path} can be read by every user of this machine: chmod 600 {path}")
        data = file.read(4097)
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or len(data) > 4096:
        raise ConfigError(f"--token-file {path}: give a file that holds the token, one line of 16 characters or "
                          "more")
    return token


class _HideToken(logging.Filter):
    """The access log's ``?token=...`` as ``token=…``."""

    PATTERN = re.compile(r"(?<=[?&]token=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub("…", a) if isinstance(a, str) else a for a in record.args)
        record.msg = self.PATTERN.sub("…", record.msg) if isinstance(record.msg, str) else record.msg
        return True


@contextlib.contextmanager
def _served(root: Path) -> Iterator[None]:
    """Hold ``ROOT/.studio.lock`` while the server runs: a second studio on ROOT is one line."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(root.resolve() / LOCK, root))
        except RunFolderBusyError as exc:
            holder = re.search(r"PID \d+", str(exc))
            by = holder.group(0) if holder else "another process"
            raise ConfigError(f"ROOT {root} is served by another studio ({by}): open that one, or stop it first (two "
                              "studios on one ROOT would lose each other's edits)") from None
        yield


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
                   help="address to listen on (default 127.0.0.1, this machine only; any other needs a token, made "
                   f"for the run unless ${TOKEN_ENV} or --token-file gives one)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name the studio answers to, as browsers put it in the Host header (this machine's "
                   "name or address, with --host 0.0.0.0); 127.0.0.1, localhost, [::1] and --host always; repeatable")
    p.add_argument("--token-file", type=Path, metavar="FILE",
                   help=f"a file that holds the secret every request must carry (or set ${TOKEN_ENV}): the page "
                   "keeps it in a cookie once opened with ?token=TOKEN; scripts send Authorization: Bearer TOKEN")
    p.add_argument("--token", help=argparse.SUPPRESS)  # refused: a command line is readable by every user
    p.add_argument("--models", type=Path, metavar="DIR",
                   help="a folder of models (diffusers folders, weights files): a project's settings may name its "
                   "entries as models; over HTTP a model is otherwise a registry name or a hub id, never a path")
    p.add_argument("--max-upload-mb", type=float, default=50, metavar="MB",
                   help="largest request body, an uploaded image included (default 50; larger gets 413)")
    add_common_flags(p)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m studio", description="Serve the artwalk timeline studio.")
    add_arguments(p)
    return run_cli(serve, p, argv)
