"""A tiny CGI host for `git http-backend`: git's smart HTTP behind the gateway,
so a real git client clones and pushes through it. Serves the bare
repositories under ROOT at /git/; the user the gateway vouches for
(Remote-User) becomes REMOTE_USER, which is what lets http-backend accept a
push. Prints "listening on PORT" once ready.

Usage: python3 git_cgi.py ROOT
"""
import http.server
import os
import subprocess
import sys

ROOT = sys.argv[1]


class Git(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def serve(self):
        path, _, query = self.path.partition("?")
        if not path.startswith("/git/"):
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path[len("/git"):],
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        user = self.headers.get("Remote-User")
        if user:
            env["REMOTE_USER"] = user
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        if not rest and b"\n\n" in out:
            head, _, rest = out.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    do_GET = serve
    do_POST = serve

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Git)
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
