#!/usr/bin/env python3
"""A Splunk HEC receiver for the soak test: checks the token, gunzips, parses
stacked envelopes strictly, appends each event's id to a file, and answers 503
(code 9, "server is busy") while the file named by --down-flag exists."""
import argparse, gzip, json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--token", required=True)
p.add_argument("--ids", required=True)
p.add_argument("--down-flag", required=True)
a = p.parse_args()
out = open(a.ids, "a", buffering=1)


class H(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/services/collector/health"):
            return self.reply(200, {"text": "HEC is healthy", "code": 17})
        self.reply(404, {"text": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.headers.get("Authorization") != "Splunk " + a.token:
            return self.reply(403, {"text": "Invalid token", "code": 4})
        if os.path.exists(a.down_flag):
            return self.reply(503, {"text": "Server is busy", "code": 9})
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        dec, text, pos, ids = json.JSONDecoder(), body.decode(), 0, []
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                env, pos = dec.raw_decode(text, pos)
                ids.append(env["event"]["id"])
            except (ValueError, KeyError, TypeError):
                return self.reply(400, {"text": "Invalid data format", "code": 6, "invalid-event-number": len(ids)})
        out.write("".join(f"{i}\n" for i in ids))
        self.reply(200, {"text": "Success", "code": 0})


ThreadingHTTPServer(("127.0.0.1", a.port), H).serve_forever()
