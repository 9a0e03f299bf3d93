"""A webhook receiver as a mailgw user writes one: Python's standard library only, the
signature checked with README's `verify` (readme_verify.py, cut from README.md by the test
and put next to this file), the JSON decoded and the base64 `raw` written out.

    python3 webhook_receiver.py PORT OUT_DIR SECRET

Every verified post is recorded before it is answered (the receiver has "processed" it):
OUT_DIR/<n>.eml holds the decoded `raw`, OUT_DIR/received.jsonl one summary line per post.
A post that fails verification is answered 401 and recorded with `error`.

The path after /hook picks a misbehaviour, played on the FIRST post of a message id only;
later posts of that id (mailgw's retries) get a plain 200, so a test sees the retry arrive:
  /hook              200 "ok" (Content-Length, HTTP/1.1 keep-alive)
  /hook/204, /hook/202                      that status (202 with a body)
  /hook/chunked                             200 with a chunked body
  /hook/big-reply                           200 with a 2 MB body
  /hook/close-mid-body                      200, Content-Length 100000, 20 bytes, then close
  /hook/slow-once                           answers after 3 s (a proxy in front times out)
  /hook/never                               never answers (held for 60 s)
"""
import base64
import hashlib
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from readme_verify import verify  # noqa: E402  (README's recipe, as written)

PORT, OUT, SECRET = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
LOCK = threading.Lock()


def seen_ids():
    path = os.path.join(OUT, "received.jsonl")
    if not os.path.exists(path):
        return set()
    with open(path, encoding="utf-8") as f:
        return {json.loads(line).get("id") for line in f if line.strip()}


SEEN = seen_ids()  # survives a restart of this process (the "backend down" test)


def summary(post, raw):
    return {
        "id": post["id"],
        "timestamp": post["timestamp"],
        "subject": post["subject"],
        "messageId": post["messageId"],
        "from": post["from"],
        "to": post["to"],
        "envelope": post["envelope"],
        "rule": post["rule"],
        "category": post["category"],
        "text": post["text"],
        "html": post["html"],
        "attachments": post["attachments"],
        "headerNames": [h["name"] for h in post["headers"]],
        "size": post["size"],
        "rawLength": len(raw),
        "rawSha256": hashlib.sha256(raw).hexdigest(),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        mode = self.path[len("/hook"):].strip("/") or "ok"
        entry = {"path": self.path, "contentType": self.headers.get("Content-Type"),
                 "userAgent": self.headers.get("User-Agent"), "bodyLength": len(body)}
        try:
            post = verify(body, self.headers.get("X-Mailgw-Signature"), SECRET)
        except ValueError as err:
            return self.refuse(entry, 401, str(err))
        except Exception as err:  # the recipe itself broke: a 500, which mailgw retries
            return self.refuse(entry, 500, f"{type(err).__name__}: {err}")
        raw = base64.b64decode(post["raw"], validate=True)
        header_ts = self.headers.get("X-Mailgw-Timestamp")
        with LOCK:
            entry.update(summary(post, raw), headerTimestamp=header_ts, duplicate=post["id"] in SEEN)
            first = post["id"] not in SEEN
            SEEN.add(post["id"])
            self.record(entry, raw)
        self.respond(mode if first else "ok")

    def refuse(self, entry, status, error):
        with LOCK:
            self.record({**entry, "error": error}, None)
        self.send(status, error.encode())

    def record(self, entry, raw):
        path = os.path.join(OUT, "received.jsonl")
        n = sum(1 for _ in open(path, encoding="utf-8")) if os.path.exists(path) else 0
        entry["n"] = n
        if raw is not None:
            with open(os.path.join(OUT, f"{n}.eml"), "wb") as f:
                f.write(raw)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def respond(self, mode):
        if mode == "204":
            return self.send(204)
        if mode == "202":
            return self.send(202, b"queued for processing")
        if mode == "big-reply":
            return self.send(200, b"x" * (2 * 1024 * 1024), [("Content-Type", "text/plain")])
        if mode == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"stored ", b"in ", b"three chunks"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return None
        if mode == "close-mid-body":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"partial reply, then ")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        if mode == "slow-once":
            time.sleep(3)
        if mode == "never":
            time.sleep(60)
        return self.send(200, b"ok")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", PORT), Handler)
    print(f"listening on {PORT}", flush=True)
    server.serve_forever()
