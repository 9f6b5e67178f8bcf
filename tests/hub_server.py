"""A stand-in for the Hugging Face Hub on 127.0.0.1, for tests: it answers what ``hf_hub_download`` asks of the
Hub, ``HEAD`` and ``GET /{org}/{name}/resolve/{revision}/{file}``, with the headers the client needs (ETag,
X-Repo-Commit, Content-Length) and the Hub's errors (404 with X-Error-Code RepoNotFound,
RevisionNotFound or EntryNotFound), and counts the requests it served."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path
from urllib.parse import unquote


class HubServer:
    """``repos[repo_id][revision] = (commit, {file name: bytes})``; a revision is a branch or tag name, and every
    commit also answers by its own hash."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, tuple[str, dict[str, bytes]]]] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):  # the http.server interface names it
                server.answer(self, body=False)

            def do_GET(self):
                server.answer(self, body=True)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo_id: str, revision: str, folder: Path) -> str:
        """Serve the files of ``folder`` as ``repo_id`` at ``revision``; returns the commit hash."""
        files = {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}
        commit = hashlib.sha1(repr(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()
                              + repo_id.encode() + revision.encode()).hexdigest()
        self.repos.setdefault(repo_id, {})[revision] = (commit, files)
        self.repos[repo_id][commit] = (commit, files)
        return commit

    def answer(self, handler: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append((handler.command, handler.path))
        parts = unquote(handler.path.split("?")[0]).strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self.error(handler, 404, "EntryNotFound", "not a resolve request")
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if repo_id not in self.repos:
            return self.error(handler, 404, "RepoNotFound", f"Repository {repo_id} not found")
        if revision not in self.repos[repo_id]:
            return self.error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        commit, files = self.repos[repo_id][revision]
        if filename not in files:
            return self.error(handler, 404, "EntryNotFound", f"{filename} does not exist at {revision}")
        content = files[filename]
        handler.send_response(200)
        handler.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        handler.send_header("X-Repo-Commit", commit)
        handler.send_header("Content-Length", str(len(content)))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if body:
            handler.wfile.write(content)

    @staticmethod
    def error(handler: http.server.BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        payload = f'{{"error": "{message}"}}'.encode()
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
