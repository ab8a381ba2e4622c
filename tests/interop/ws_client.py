"""A third-party WebSocket client for Confab (Python `websockets`), used by the interop test.

Usage: ws_client.py WS_URL TOKEN CONVERSATION_ID

Connects with a bearer token, expects `ready`, sends a message over the socket (expects the
`ack`), then waits for a `new_message` whose content is "from rust" and exits 0. Every frame
it receives is printed as one JSON line. Exits non-zero on any surprise.
"""

import asyncio
import json
import re
import sys

import websockets


CURSOR = re.compile(r"^[0-9a-f]+-[0-9]+$")


async def next_frame(ws):
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    print(json.dumps(frame), flush=True)
    return frame


async def main(url, token, conversation_id):
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        ready = await next_frame(ws)
        assert ready["type"] == "ready", ready
        assert CURSOR.match(ready["payload"]["cursor"]), ready

        await ws.send(json.dumps({
            "type": "send",
            "payload": {"conversation_id": conversation_id, "content": "from python",
                        "client_id": "py-1"},
        }))
        while True:
            frame = await next_frame(ws)
            if frame["type"] == "ack":
                assert frame["payload"]["message"]["content"] == "from python", frame
                assert frame["payload"]["client_id"] == "py-1", frame
                break

        print("READY_FOR_RUST", flush=True)
        while True:
            frame = await next_frame(ws)
            if frame["type"] == "new_message" and frame["payload"]["content"] == "from rust":
                assert CURSOR.match(frame["cursor"]), frame
                break
    print("INTEROP_OK", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
