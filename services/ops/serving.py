"""Serving the API with several worker processes (`serve-api --workers N`).

uvicorn's multiprocess supervisor binds the listening socket itself, with its protocol number left at 0. Accepted
connections inherit that number, and asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say they
are TCP: so every keep-alive request after a connection's first waited ~40 ms for the client's delayed ACK (uvicorn
issue #3149; one worker is not affected, asyncio binds that socket itself). `TcpConfig` binds the same socket and
declares it TCP, so the workers' connections get TCP_NODELAY like a single process's.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

APP_FACTORY = "services.web.api:app_from_environment"


class TcpConfig(uvicorn.Config):
    """uvicorn's configuration, binding a TCP listener that says it is one (see the module's docstring)."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
            return sock
        tcp = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        tcp.set_inheritable(True)
        return tcp


def run_workers(*, host: str, port: int, workers: int, log_level: str) -> None:
    """The API in `workers` processes sharing one listening socket, restarted by uvicorn's supervisor if one dies."""
    config = TcpConfig(APP_FACTORY, factory=True, workers=workers, host=host, port=port, log_level=log_level)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
