"""The listening socket `serve-api --workers N` shares among its workers: connections accepted on it get TCP_NODELAY,
as a single process's do. Without it (uvicorn's own bind, protocol number 0) asyncio leaves Nagle's algorithm on and
each keep-alive request after a connection's first waits ~40 ms for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

from services.ops.serving import APP_FACTORY, TcpConfig


def accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY on a connection asyncio's server accepted on `listener` (the workers' event loop does the same)."""

    async def accept_one() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    # In a thread of its own: an earlier test of the session may have left this thread's event loop marked running.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, accept_one()).result(timeout=30)


def test_the_workers_listener_gives_every_connection_tcp_nodelay() -> None:
    config = TcpConfig(APP_FACTORY, factory=True, workers=2, host="127.0.0.1", port=0)
    listener = config.bind_socket()
    assert listener.proto == socket.IPPROTO_TCP
    assert listener.get_inheritable()  # the supervisor hands it to spawned workers
    assert accepted_nodelay(listener) == 1
