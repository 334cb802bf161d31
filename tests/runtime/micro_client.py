"""A discovery client that is not ours: nats-py and its micro types.

Usage: python micro_client.py NATS_URL SERVICE_NAME

Pings every instance of SERVICE_NAME (`$SRV.PING.<name>`, replies collected
for one second), then asks each instance for INFO and STATS on
`$SRV.<verb>.<name>.<id>`, parses every reply with nats-py's own
`ServicePing`, `ServiceInfo` and `ServiceStats` (which raise on a missing
field or a malformed `started`), and prints one JSON object.
"""

import asyncio
import json
import sys

import nats
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats


async def main(url: str, name: str) -> None:
    nc = await nats.connect(url)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(f"$SRV.PING.{name}", b"", reply=inbox)
    pings = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while True:
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            msg = await sub.next_msg(timeout=left)
        except nats.errors.TimeoutError:
            break
        pings.append(ServicePing.from_dict(json.loads(msg.data)))
    out = {"instances": {}}
    for ping in pings:
        info_msg = await nc.request(f"$SRV.INFO.{name}.{ping.id}", b"", timeout=5)
        info = ServiceInfo.from_dict(json.loads(info_msg.data))
        stats_msg = await nc.request(f"$SRV.STATS.{name}.{ping.id}", b"", timeout=5)
        stats = ServiceStats.from_dict(json.loads(stats_msg.data))
        out["instances"][ping.id] = {
            "name": ping.name,
            "version": ping.version,
            "ping_type": ping.type,
            "info_type": info.type,
            "stats_type": stats.type,
            "description": info.description,
            "endpoints": {e.name: e.subject for e in info.endpoints},
            "started": stats.started.isoformat(),
            "requests": {e.name: e.num_requests for e in stats.endpoints},
            "errors": {e.name: e.num_errors for e in stats.endpoints},
        }
    await nc.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
