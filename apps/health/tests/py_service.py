"""A NATS micro service written with nats-py (not Telestion), for the
health tool's tests: service `pyservice` version 3.1.0 with one endpoint
`greet` on `py.greet`. Prints `ready` when it serves, runs until killed.

Usage: python py_service.py NATS_URL
"""

import asyncio
import sys

import nats
import nats.micro


async def main(url: str) -> None:
    nc = await nats.connect(url)

    async def greet(request) -> None:
        await request.respond(b"hello")

    service = await nats.micro.add_service(nc, name="pyservice", version="3.1.0")
    await service.add_endpoint(name="greet", subject="py.greet", handler=greet)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
