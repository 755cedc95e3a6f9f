#!/usr/bin/env python3
"""Times `verdict lsp` on one document: first diagnostics after opening it, then EDITS quick
incremental edits (a space inserted and deleted at the start of line 2) followed by a hover, and
the diagnostics of the last version. Usage: scripts/lsp_burst.py VERDICT_BINARY FILE [EDITS]"""
import json, queue, subprocess, sys, threading, time

binary, path = sys.argv[1], sys.argv[2]
edits = int(sys.argv[3]) if len(sys.argv) > 3 else 200
text = open(path).read()
proc = subprocess.Popen([binary, "lsp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
inbox = queue.Queue()

def reader():
    out = proc.stdout
    while True:
        line, length = out.readline(), None
        if not line:
            return
        while line.strip():
            if line.startswith(b"Content-Length:"):
                length = int(line.split(b":")[1])
            line = out.readline()
        inbox.put(json.loads(out.read(length)))

threading.Thread(target=reader, daemon=True).start()

def send(message):
    body = json.dumps(dict(jsonrpc="2.0", **message)).encode()
    proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    proc.stdin.flush()

def wait(what, started, pred):
    while not pred(m := inbox.get(timeout=600)):
        pass
    print(f"{what}: {time.time() - started:.2f} s", flush=True)

def published(version):
    return lambda m: m.get("method") == "textDocument/publishDiagnostics" and m["params"]["version"] == version

send({"id": 1, "method": "initialize", "params": {"capabilities": {}}})
wait("initialize", time.time(), lambda m: m.get("id") == 1)
uri = "file:///burst." + path.rsplit(".", 1)[1]
started = time.time()
send({"method": "textDocument/didOpen", "params": {"textDocument": {"uri": uri, "languageId": path.rsplit(".", 1)[1], "version": 1, "text": text}}})
wait(f"first diagnostics ({len(text.encode()):,} bytes)", started, published(1))
started = time.time()
for v in range(2, 2 + edits):
    insert = v % 2 == 0
    change = {"range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 0 if insert else 1}}, "text": " " if insert else ""}
    send({"method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": v}, "contentChanges": [change]}})
send({"id": 2, "method": "textDocument/hover", "params": {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 8}}})
wait(f"{edits} edits, then a hover answered", started, lambda m: m.get("id") == 2)
if edits:
    wait("diagnostics of the last version", started, published(1 + edits))
send({"id": 3, "method": "shutdown"})
send({"method": "exit"})
proc.wait(timeout=60)
