"""A TCP proxy that adds a fixed delay each way, in user space (this machine's kernel has no netem):
every chunk read from one side is written to the other ``delay`` seconds later, in order.

    python bench/delay_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_MS

Used by the benchmark in front of the API server (a kubeconfig pointing at 127.0.0.1:LISTEN_PORT),
so that the transport through the Kubernetes API sees an added round-trip time of 2 x DELAY_MS."""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, chunk))
    except ConnectionError:
        pass
    queue.put_nowait((loop.time() + delay, b""))
    await sender


async def _serve(port: int, host: str, target_port: int, delay: float) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer, delay), _pipe(upstream_reader, writer, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    port, target, delay_ms = sys.argv[1:4]
    host, _, target_port = target.rpartition(":")
    asyncio.run(_serve(int(port), host, int(target_port), float(delay_ms) / 1000))


if __name__ == "__main__":
    main()
