#!/usr/bin/env python3
"""Watch tether work: two clients on a running gateway. Alice's link drops
while Bob keeps publishing; Alice resumes and gets exactly what she missed.

    scripts/demo.py ws://127.0.0.1:8080/ <token-for-alice> <token-for-bob>
"""

import asyncio
import json
import sys

import websockets


async def client(url, token):
    ws = await websockets.connect(url, subprotocols=["tether.v1"])
    hello = json.loads(await ws.recv())["d"]
    await ws.send(json.dumps({"op": "IDENTIFY", "d": {"token": token, "client": {"name": "demo", "version": "1"}}}))
    ready = json.loads(await ws.recv())["d"]
    return ws, hello, ready


async def expect(ws, op):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if m["op"] == op:
            return m["d"]


async def main(url, alice_token, bob_token):
    alice, hello, a = await client(url, alice_token)
    print(f"alice: connected to {hello['server_name']} {hello['server_version']}, session {a['session_id'][:8]}…")
    await alice.send(json.dumps({"op": "JOIN", "d": {"room": "lobby"}}))
    joined = await expect(alice, "JOINED")
    position = joined["offset"]
    print(f"alice: joined lobby at offset {position}")
    bob, _, _ = await client(url, bob_token)

    async def publish(i):
        await bob.send(json.dumps({"op": "PUBLISH", "d": {"room": "lobby", "id": f"demo-{id(bob)}-{i}",
                                                          "data": {"text": f"message {i}"}}}))
        ack = await expect(bob, "ACK")
        print(f"  bob: published message {i} -> offset {ack['offset']}")

    for i in range(1, 4):
        await publish(i)
        ev = await expect(alice, "EVENT")
        position = ev["offset"]
        print(f"alice: got offset {ev['offset']}: {ev['data']['text']}")
    alice.transport.abort()
    print("alice: *** link dropped ***")
    for i in range(4, 9):
        await publish(i)
    alice, _, _ = await websockets.connect(url, subprotocols=["tether.v1"]), None, None
    await alice.recv()  # HELLO
    await alice.send(json.dumps({"op": "RESUME", "d": {"session_id": a["session_id"], "resume_token": a["resume_token"],
                                                       "rooms": [{"room": "lobby", "epoch": joined["epoch"],
                                                                  "offset": position}]}}))
    await expect(alice, "RESUMED")
    j = await expect(alice, "JOINED")
    print(f"alice: resumed, recovered={j['recovered']}, head is now {j['offset']}")
    for _ in range(j["offset"] - position):
        ev = await expect(alice, "EVENT")
        print(f"alice: replayed offset {ev['offset']}: {ev['data']['text']}")
    print("nothing lost, nothing twice.")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
