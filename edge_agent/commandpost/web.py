"""The command post's page (Starlette): sign-in, the live board and map, alert details with snapshots, acks,
history with exports, and a server-sent event stream that tells open pages what changed.

Security: users sign in with a password (Argon2id hashes, ``users``); the session is a signed cookie
(HttpOnly, SameSite=Strict, Secure under HTTPS) that names the user and the time of sign-in; every request
looks the user up again, so a removed user or a changed password ends old sessions. Every state change (sign
in and out, ack) carries the session's CSRF token (form field or ``X-CSRF-Token`` header) and, where the
browser sends one, an Origin of this page. Failed sign-ins are limited per address and per name. Pages are
Jinja2 templates with autoescaping, scripts build the DOM with ``textContent`` only, and a Content Security
Policy allows scripts, styles, images and connections from this origin alone: nothing from a box's payload
runs, and the page never reaches outside the command post."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_agent.commandpost import board
from edge_agent.commandpost.receiver import Receiver
from edge_agent.commandpost.store import CommandPostStore
from edge_agent.commandpost.users import User, Users
from edge_agent.config.commandpost import CommandPostConfig
from edge_agent.contract.acks import NOTE_MAX
from edge_agent.contract.ids import ULID_RE

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SIGNIN_WINDOW_S = 300.0
SIGNIN_MAX_FAILURES = 5  # per address and per name in the window; then 429 until the oldest failure ages out
EVENT_QUEUE = 2000  # a page this far behind is told to load everything again
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


class LiveEvents:
    """Fan-out of store changes to every open page's event stream. ``publish`` is called from the MQTT thread;
    each page has a bounded queue on the server's event loop; a page that falls behind gets ``resync``."""

    def __init__(self, store: CommandPostStore, silent_after_s: float) -> None:
        self.store, self.silent_after_s = store, silent_after_s
        self._subs: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = set()
        self._lock = threading.Lock()

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs)
        if not subs:
            return
        full = self._enrich(event)
        for loop, q in subs:
            loop.call_soon_threadsafe(self._put, q, full)

    def _enrich(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with what the page needs to draw it (read once for every page)."""
        kind = event["type"]
        if kind == "alert":
            row = self.store.alert(event["alert_id"])
            return {**event, "alert": board.alert_row(row) if row else None, "sent": time.time()}
        if kind == "box":
            return {**event, "box": board.box(self.store, event["key"], time.time(), self.silent_after_s)}
        if kind == "site":
            return {**event, "site": next((m for m in board.site_maps(self.store) if m["key"] == event["key"]), None)}
        return event

    @staticmethod
    def _put(q: asyncio.Queue[dict[str, Any]], event: dict[str, Any]) -> None:
        if q.full():
            while not q.empty():
                q.get_nowait()
            event = {"type": "resync"}
        q.put_nowait(event)

    async def stream(self) -> AsyncIterator[dict[str, str]]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_QUEUE)
        sub = (loop, q)
        with self._lock:
            self._subs.add(sub)
        try:
            yield {"event": "hello", "data": "{}"}
            while True:
                event = await q.get()
                yield {"event": event["type"], "data": json.dumps(event, separators=(",", ":"))}
        finally:
            with self._lock:
                self._subs.discard(sub)

    @property
    def pages(self) -> int:
        with self._lock:
            return len(self._subs)


@dataclass
class SignInLimiter:
    window_s: float = SIGNIN_WINDOW_S
    max_failures: int = SIGNIN_MAX_FAILURES
    _fails: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, keys: list[str], now: float) -> float:
        """Seconds until these keys may try again (0: now)."""
        with self._lock:
            worst = 0.0
            for k in keys:
                d = self._fails.get(k)
                while d and d[0] < now - self.window_s:
                    d.popleft()
                if d is not None and len(d) >= self.max_failures:
                    worst = max(worst, d[0] + self.window_s - now)
            return worst

    def failed(self, keys: list[str], now: float) -> None:
        with self._lock:
            for k in keys:
                self._fails[k].append(now)

    def succeeded(self, name_key: str) -> None:
        with self._lock:
            self._fails.pop(name_key, None)


class SecurityHeaders:
    """CSP and friends on every response."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app, self.https = app, https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY"),
                            (b"cache-control", b"no-store")]
                if self.https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Page:
    """The web application around a store, its users, the live events and the MQTT receiver (for acks)."""

    def __init__(self, cfg: CommandPostConfig, store: CommandPostStore, events: LiveEvents,
                 receiver: Receiver | None, leaflet_dir: Path) -> None:
        self.cfg, self.store, self.events, self.receiver = cfg, store, events, receiver
        self.users = Users(store)
        self.limiter = SignInLimiter()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
        self.templates.env.filters["utc"] = lambda ts: datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
        self.leaflet_dir = leaflet_dir

    # -- sessions ------------------------------------------------------------------------------------------

    def user(self, request: Request) -> User | None:
        s = request.session
        name, at = s.get("user"), s.get("at")
        if not isinstance(name, str) or not isinstance(at, int | float):
            return None
        if time.time() - at > self.cfg.session_hours * 3600:
            return None
        u = self.users.get(name)
        if u is None or u.changed > at:  # removed, or the password or role changed since this sign-in
            return None
        return u

    def csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return token

    async def check_csrf(self, request: Request, form_token: str | None = None) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "request from another site refused")
        sent = form_token if form_token is not None else request.headers.get("x-csrf-token", "")
        token = request.session.get("csrf")
        if not isinstance(token, str) or not isinstance(sent, str) or not secrets.compare_digest(token, sent):
            raise HTTPException(403, "missing or wrong CSRF token: load the page again")

    def need(self, request: Request) -> User:
        u = self.user(request)
        if u is None:
            raise HTTPException(401, "sign in first")
        return u

    # -- pages ---------------------------------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        if self.user(request) is not None:
            return RedirectResponse("/", 303)
        return self.templates.TemplateResponse(request, "login.html", {"csrf": self.csrf(request), "error": None})

    async def signin(self, request: Request) -> Response:
        form = await request.form()
        await self.check_csrf(request, str(form.get("csrf", "")))
        name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))
        ip = request.client.host if request.client else "?"
        keys, now = [f"ip:{ip}", f"name:{name}"], time.time()
        wait = self.limiter.wait_s(keys, now)
        if wait > 0:
            return self.templates.TemplateResponse(request, "login.html", {
                "csrf": self.csrf(request),
                "error": f"Too many failed sign-ins. Try again in {int(wait) + 1} s."}, status_code=429)
        user = await asyncio.to_thread(self.users.verify, name, password)  # Argon2 takes a while: off the loop
        if user is None:
            self.limiter.failed(keys, now)
            log.warning("failed sign-in for %r from %s", name, ip)
            return self.templates.TemplateResponse(request, "login.html", {
                "csrf": self.csrf(request), "error": "Wrong name or password."}, status_code=401)
        self.limiter.succeeded(f"name:{name}")
        request.session.clear()
        request.session.update({"user": user.name, "at": time.time(), "csrf": secrets.token_urlsafe(32)})
        log.info("%s signed in from %s", user.name, ip)
        return RedirectResponse("/", 303)

    async def signout(self, request: Request) -> Response:
        form = await request.form()
        await self.check_csrf(request, str(form.get("csrf", "")))
        request.session.clear()
        return RedirectResponse("/login", 303)

    async def board_page(self, request: Request) -> Response:
        u = self.user(request)
        if u is None:
            return RedirectResponse("/login", 303)
        return self.templates.TemplateResponse(request, "board.html", {"csrf": self.csrf(request), "me": u,
                                                                       "attribution": self.cfg.map.attribution})

    async def history_page(self, request: Request) -> Response:
        u = self.user(request)
        if u is None:
            return RedirectResponse("/login", 303)
        q = dict(request.query_params)
        error, rows = None, []
        try:
            f = board.HistoryFilter.from_query(q)
            rows = await asyncio.to_thread(board.history, self.store, f)
        except board.FilterError as exc:
            error = str(exc)
        fmt = q.get("format")
        if fmt in ("csv", "geojson") and error is None:
            if not u.can_export:
                raise HTTPException(403, "exports are for commanders")
            if fmt == "csv":
                return Response(board.export_csv(rows), media_type="text/csv", headers={
                    "content-disposition": 'attachment; filename="alerts.csv"'})
            return Response(json.dumps(board.export_geojson(rows)), media_type="application/geo+json",
                            headers={"content-disposition": 'attachment; filename="alerts.geojson"'})
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "format"])
        return self.templates.TemplateResponse(request, "history.html", {
            "csrf": self.csrf(request), "me": u, "rows": rows, "q": q, "error": error, "query": query,
            "choices": board.history_choices(self.store), "limit": board.HISTORY_LIMIT,
            "severities": board.SEVERITIES, "states": ("open", *board.ALERT_STATES)}, status_code=400 if error else 200)

    # -- the page's data -----------------------------------------------------------------------------------

    async def state(self, request: Request) -> Response:
        u = self.need(request)

        def read() -> dict[str, Any]:
            now = time.time()
            return {"me": {"name": u.name, "role": u.role, "can_ack": u.can_ack, "can_export": u.can_export},
                    "now": now, "alerts": board.board_alerts(self.store, self.cfg.max_alerts_shown),
                    "boxes": board.boxes(self.store, now, self.cfg.silent_after_s),
                    "sites": board.site_maps(self.store),
                    "map": {"tiles": self.cfg.map.tiles is not None, "center": self.cfg.map.center,
                            "zoom": self.cfg.map.zoom, "attribution": self.cfg.map.attribution,
                            "max_zoom": self.max_zoom},
                    "max_alerts": self.cfg.max_alerts_shown, "silent_after_s": self.cfg.silent_after_s,
                    "broker": self.receiver.connected.is_set() if self.receiver else False}

        return JSONResponse(await asyncio.to_thread(read))

    async def alert(self, request: Request) -> Response:
        self.need(request)
        alert_id = request.path_params["alert_id"]
        if not ULID_RE.match(alert_id):
            raise HTTPException(404, "no such alert")
        detail = await asyncio.to_thread(board.alert_detail, self.store, alert_id)
        if detail is None:
            raise HTTPException(404, "no such alert")
        return JSONResponse(detail)

    async def snapshot(self, request: Request) -> Response:
        self.need(request)
        alert_id = request.path_params["alert_id"]
        data = self.store.snapshot(alert_id) if ULID_RE.match(alert_id) else None
        if data is None:
            raise HTTPException(404, "no snapshot for this alert (yet)")
        return Response(data, media_type="image/jpeg")

    async def ack(self, request: Request) -> Response:
        u = self.need(request)
        await self.check_csrf(request)
        if not u.can_ack:
            raise HTTPException(403, f"{u.role}s cannot acknowledge alerts")
        alert_id = request.path_params["alert_id"]
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "expected a JSON body {\"note\": text}") from None
        note = body.get("note", "") if isinstance(body, dict) else None
        if not isinstance(note, str) or len(note) > NOTE_MAX:
            raise HTTPException(400, f"note: text of at most {NOTE_MAX} characters")
        note = "".join(ch for ch in note if ch.isprintable() or ch in "\n\t")
        row = self.store.alert(alert_id) if ULID_RE.match(alert_id) else None
        if row is None:
            raise HTTPException(404, "no such alert")
        if self.receiver is None:
            raise HTTPException(503, "no broker connection")
        try:
            self.receiver.send_ack(row["site"], row["box"], alert_id, u.name, note)
        except ConnectionError as exc:
            raise HTTPException(503, str(exc)) from None
        self.store.ack_sent(alert_id, u.name, note, time.time())
        log.info("%s acknowledged %s (%s/%s)", u.name, alert_id, row["site"], row["box"])
        return JSONResponse({"sent": True, "by": u.name})

    async def live(self, request: Request) -> Response:
        self.need(request)
        return EventSourceResponse(self.events.stream(), ping=10)

    # -- map tiles -----------------------------------------------------------------------------------------

    @property
    def max_zoom(self) -> int:
        path = self.cfg.map.tiles
        if path is None:
            return 22
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT MAX(zoom_level) FROM tiles").fetchone()
        return int(row[0]) if row and row[0] is not None else 18

    async def tile(self, request: Request) -> Response:
        self.need(request)
        path = self.cfg.map.tiles
        if path is None:
            raise HTTPException(404, "no base map configured")
        z, x, y = (int(request.path_params[k]) for k in ("z", "x", "y"))
        if not (0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z):
            raise HTTPException(404, "no such tile")

        def read() -> bytes | None:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                row = db.execute("SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND "
                                 "tile_row = ?", [z, x, 2**z - 1 - y]).fetchone()  # MBTiles rows count from south
            return bytes(row[0]) if row else None

        data = await asyncio.to_thread(read)
        if data is None:
            return Response(status_code=204)
        kind = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg" if data[:2] == b"\xff\xd8" else \
            "image/webp" if data[8:12] == b"WEBP" else "application/octet-stream"
        return Response(data, media_type=kind, headers={"cache-control": "private, max-age=3600"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/") or request.headers.get("accept", "").startswith("application/json"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return Response(f"{exc.status_code}: {exc.detail}\n", status_code=exc.status_code, media_type="text/plain")


def build_app(page: Page, on_start: Callable[[], None] | None = None,
              on_stop: Callable[[], None] | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if on_start is not None:
            on_start()
        try:
            yield
        finally:
            if on_stop is not None:
                on_stop()

    https = page.cfg.listen.tls is not None
    routes = [
        Route("/", page.board_page),
        Route("/login", page.signin_page, methods=["GET"]),
        Route("/login", page.signin, methods=["POST"]),
        Route("/logout", page.signout, methods=["POST"]),
        Route("/history", page.history_page),
        Route("/api/state", page.state),
        Route("/api/alerts/{alert_id}", page.alert),
        Route("/api/alerts/{alert_id}/ack", page.ack, methods=["POST"]),
        Route("/api/snapshots/{alert_id}", page.snapshot),
        Route("/api/events", page.live),
        Route("/tiles/{z:int}/{x:int}/{y:int}", page.tile),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        Mount("/leaflet", StaticFiles(directory=str(page.leaflet_dir)), name="leaflet"),
    ]
    middleware = [
        Middleware(SecurityHeaders, https=https),
        Middleware(SessionMiddleware, secret_key=page.store.secret(), session_cookie="cp_session",
                   max_age=int(page.cfg.session_hours * 3600), same_site="strict", https_only=https),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {HTTPException: _http_error}
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers=handlers)
