"""An HTTP server on 127.0.0.1 for lakecat's trust-boundary tests, run as its own process.

Usage: server.py PORT IMAGES_DIR

  /images/NAME        the file NAME from IMAGES_DIR
  /redirect/images/NAME     302 to this server's /images/NAME
  /redirect/localhost/NAME  302 to the same image by the name localhost
  /redirect/metadata        302 to the cloud metadata address
  /forbidden          403 whose body is a secret that must never reach a row's error
  /huge               announces 100 MiB and sends nothing (the size must be refused up front)
"""

import http.server
import os
import sys
import time
import urllib.parse

SECRET = b"internal-secret-token-7f3a"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path.startswith("/images/"):
            name = os.path.basename(url.path)
            try:
                with open(os.path.join(sys.argv[2], name), "rb") as file:
                    body = file.read()
            except OSError:
                return self.reply(404, b"not found")
            return self.reply(200, body, {"Last-Modified": "Tue, 01 Dec 2026 00:00:00 GMT", "ETag": '"%d"' % len(body)})
        port = sys.argv[1]
        redirects = {
            "/redirect/images/": "http://127.0.0.1:%s/images/" % port,
            "/redirect/localhost/": "http://localhost:%s/images/" % port,
            "/redirect/metadata": "http://169.254.169.254/latest/meta-data",
        }
        for prefix, target in redirects.items():
            if url.path.startswith(prefix):
                return self.reply(302, b"", {"Location": target + url.path[len(prefix):]})
        if url.path == "/forbidden":
            return self.reply(403, SECRET)
        if url.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(100 * 1024 * 1024))
            self.send_header("Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT")
            self.end_headers()
            self.wfile.flush()
            time.sleep(20)
            return
        self.reply(404, b"no such route")

    def reply(self, status, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()
