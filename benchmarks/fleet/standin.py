"""Stand-in V2 inference servers for the controller's scale benchmark: many ports, one process, instant answers.

Each port is one "host" holding a set of loaded models. It answers the routes the controller uses, at once:
``POST /v2/repository/index``, ``POST /v2/repository/models/{m}/load`` and ``/unload``,
``GET /v2/models/{m}/versions/{v}`` (metadata), ``/ready``, ``POST .../infer`` and ``GET /v2/health/ready``.
A small HTTP/1.1 server on asyncio streams (keep-alive, Content-Length bodies): no framework, so the figures
measure the controller rather than the stand-in.

    python benchmarks/fleet/standin.py --hosts 200 --ports-file /tmp/ports.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

INPUTS = [{"name": "x", "datatype": "FP32", "shape": [1, 4]}]
OUTPUT = {"outputs": [{"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [0.0, 0.0, 0.0, 0.0]}]}


def route(loaded: dict[str, str], method: str, path: str) -> tuple[int, object]:
    """The answer of one host to one request."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if path.startswith("/v2/health"):
        return 200, {"ready": True}
    if method == "POST" and parts[:3] == ["v2", "repository", "index"]:
        return 200, [{"name": m, "version": v, "state": "READY", "reason": ""} for m, v in sorted(loaded.items())]
    if method == "POST" and parts[:3] == ["v2", "repository", "models"] and len(parts) == 5:
        name, verb = parts[3], parts[4]
        if verb == "load":
            loaded[name] = "1"
            return 200, {"name": name, "ready": True, "report": {}}
        if verb == "unload":
            return (200, {"name": name}) if loaded.pop(name, None) is not None else (404, {"error": "not loaded"})
    if method == "GET" and parts[:2] == ["v2", "models"] and len(parts) in (3, 5):
        return 200, {"name": parts[2], "versions": ["1"], "platform": "standin", "inputs": INPUTS, "outputs": []}
    if parts[:2] == ["v2", "models"] and len(parts) >= 3:
        name, last = parts[2], parts[-1]
        if last == "ready":
            return (200, {"name": name, "ready": True}) if name in loaded else (400, {"name": name, "ready": False})
        if last == "infer":
            return (200, {"model_name": name, **OUTPUT}) if name in loaded else (503, {"error": "not ready"})
    return 404, {"error": f"no route {method} {path}"}


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, loaded: dict[str, str]) -> None:
    try:
        while True:
            request = await reader.readline()
            if not request:
                return
            method, path, _ = request.decode("latin-1").split(" ", 2)
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                if key.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            status, body = route(loaded, method, path)
            payload = json.dumps(body).encode()
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (status, b"OK" if status == 200 else b"ERR", len(payload)) + payload
            )
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()


async def main(hosts: int, ports_file: Path) -> None:
    servers = []
    ports = []
    for _ in range(hosts):
        loaded: dict[str, str] = {}
        server = await asyncio.start_server(
            lambda r, w, loaded=loaded: serve_one(r, w, loaded), "127.0.0.1", 0, backlog=1024
        )
        servers.append(server)
        ports.append(server.sockets[0].getsockname()[1])
    ports_file.write_text(json.dumps(ports))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--ports-file", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.hosts, args.ports_file))
