"""The same peer as node/ws_server.js, on Python `websockets` (another
library we did not write), run as its own process with the same stdin/stdout
contract."""

import asyncio
import json
import os
import sys

import websockets

KEY = os.environ.get("AUTH_KEY", "secret")
conns = {}
state = {"next": 1}


def out(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()


async def handler(ws, path=None):
    cid = state["next"]
    state["next"] += 1
    conns[cid] = ws
    out({"event": "connection", "conn": cid, "headers": dict(ws.request_headers)})
    authed = False
    try:
        async for msg in ws:
            binary = isinstance(msg, bytes)
            text = msg.hex() if binary else msg
            out({"event": "message", "conn": cid, "data": text, "binary": binary})
            if not authed:
                try:
                    m = json.loads(text)
                    ok = m.get("op") == "auth" and m.get("key") == KEY
                except (ValueError, AttributeError):
                    ok = False
                await ws.send(json.dumps({"op": "auth", "ok": ok}))
                if not ok:
                    await ws.close(4004, "bad key")
                    return
                authed = True
                continue
            if text == "ping":
                await ws.send("pong")
            elif text.startswith("echo "):
                await ws.send(text[5:])
    except websockets.ConnectionClosed:
        pass
    finally:
        conns.pop(cid, None)


async def commands():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().rstrip("\n")
        if not line:
            return
        cmd, _, rest = line.partition(" ")
        for ws in list(conns.values()):
            if cmd == "drop":
                ws.transport.abort()
            elif cmd == "close":
                code, _, reason = rest.partition(" ")
                await ws.close(int(code), reason)
            elif cmd == "send":
                await ws.send(rest)
        out({"event": "done", "cmd": cmd})


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        out({"event": "listening", "port": server.sockets[0].getsockname()[1]})
        await commands()


asyncio.run(main())
