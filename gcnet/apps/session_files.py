"""Files that a web server hands to one browser only: an ASGI middleware for the web demo's
gradio app (``gcnet.apps.web_demo``).

gradio serves every file of its upload folder to anyone who names it, whoever uploaded it, and
through the same routes fetches URLs and reads the folders of ``allowed_paths``. In front of
it, :class:`SessionFiles` answers a request for a file only with

* one of the ``public`` files (the example images), to anyone;
* a file of ``folder`` whose path this server has sent to the same browser: its uploads and
  the pictures drawn for it. A browser is known by a random cookie the middleware sets.

Anything else asked of a file route (a neighbour, a subfolder, a path outside the folder, an
encoded or ``..`` variant that leads elsewhere, a URL) is answered 404 before gradio sees it.
"""

import json
import os
import re
import secrets
from collections import OrderedDict
from http.cookies import CookieError, SimpleCookie
from typing import Iterable, Optional, Set

__all__ = ["SESSION_COOKIE", "FILE_ROUTE", "SessionFiles"]

SESSION_COOKIE = "gcnet_session"
# gradio's routes that answer with a file or a URL's content (/gradio_api/file=<path>, the
# older /file/<path>, /proxy=<url>), and the same without the /gradio_api prefix.
FILE_ROUTE = re.compile(r"^(?:/gradio_api)?/(?:file=|file/|proxy=)(?P<target>.*)$", re.DOTALL)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
# A path cut between two chunks of a response is found in the chunks joined by this much.
_OVERLAP = 4096


class SessionFiles:
    """ASGI middleware: serve the files of ``folder`` only to the browser they were sent to
    (see the module docstring).

    Args:
        app: the ASGI app (gradio's).
        folder: the folder of uploads and drawn pictures (gradio's ``GRADIO_TEMP_DIR``).
        public: files everyone may fetch.
        max_sessions: the browsers remembered; the longest unseen is forgotten first.
    """

    def __init__(self, app, folder: str, public: Iterable[str] = (), max_sessions: int = 10000):
        self.app = app
        self.folder = os.path.realpath(folder)
        self.public = {os.path.realpath(p) for p in public}
        self.max_sessions = max_sessions
        self.sessions: OrderedDict[str, Set[str]] = OrderedDict()
        self.folder_bytes = self.folder.encode()
        # A JSON string that starts with the folder (gradio sends a file as {"path": ..., "url": ...}).
        self.path_in_json = re.compile(rb'"(' + re.escape(self.folder_bytes) + rb'/(?:[^"\\]|\\.)*)"')

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = self.session_token(scope)
        fresh = token is None
        token = token or secrets.token_urlsafe(32)
        route = FILE_ROUTE.match(scope["path"])
        if route and not self.may_serve(token, route["target"]):
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Not Found"})
            return
        overlap = b""

        async def send_and_record(message):
            nonlocal overlap
            if message["type"] == "http.response.start" and fresh:
                cookie = f"{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode()
                message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", cookie)])
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                self.record(token, overlap + body)
                overlap = body[-_OVERLAP:]
            await send(message)

        await self.app(scope, receive, send_and_record)

    @staticmethod
    def session_token(scope) -> Optional[str]:
        """The browser's token from the request's cookie, if it has a well-formed one."""
        header = b"; ".join(value for name, value in scope.get("headers", []) if name == b"cookie")
        try:
            morsel = SimpleCookie(header.decode("latin-1")).get(SESSION_COOKIE)
        except CookieError:
            return None
        return morsel.value if morsel is not None and _TOKEN.match(morsel.value) else None

    def may_serve(self, token: str, target: str) -> bool:
        """Whether the file route's ``target`` is a public file or a file of the folder sent to
        the browser of ``token``; a URL never is."""
        if "://" in target:
            return False
        try:
            path = os.path.realpath(os.path.abspath(target))
        except ValueError:  # an embedded NUL
            return False
        return path in self.public or path in self.sessions.get(token, ())

    def record(self, token: str, body: bytes) -> None:
        """Remember the files of the folder that ``body``, sent to ``token``'s browser, names."""
        if self.folder_bytes not in body:
            return
        found = set()
        for raw in self.path_in_json.findall(body):
            try:
                found.add(os.path.realpath(json.loads(b'"' + raw + b'"')))
            except ValueError:
                continue
        found = {path for path in found if path.startswith(self.folder + os.sep)}  # not a link out of it
        if found:
            self.sessions.setdefault(token, set()).update(found)
            self.sessions.move_to_end(token)
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
