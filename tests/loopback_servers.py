"""HTTP servers on 127.0.0.1 that misbehave as real ones do: accept and send nothing, send part
of a body and stall, close early, lie about Content-Length, redirect in a loop."""

import contextlib
import socket
import threading
from typing import Callable, Dict, Iterator, List

# What a server does with a connection, given the request's path.
Behaviour = Callable[[socket.socket, str], None]


def silent(conn: socket.socket, path: str) -> None:
    """Accept the request and send nothing (until the test ends)."""
    conn.recv(1)  # blocks: the client sends nothing more


def stall_after(sent: int, announced: int) -> Behaviour:
    """Announce ``announced`` bytes, send ``sent`` of them, then send nothing more."""

    def behave(conn: socket.socket, path: str) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n".encode() + b"x" * sent)
        conn.recv(1)

    return behave


def close_after(sent: int, announced: int) -> Behaviour:
    """Announce ``announced`` bytes, send ``sent`` of them and close the connection."""

    def behave(conn: socket.socket, path: str) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + b"x" * sent)

    return behave


def redirect(locations: Dict[str, str]) -> Behaviour:
    """Answer the paths of ``locations`` with a 302 to their value, others with a 404."""

    def behave(conn: socket.socket, path: str) -> None:
        if path in locations:
            head = f"HTTP/1.1 302 Found\r\nLocation: {locations[path]}\r\nContent-Length: 0\r\n"
        else:
            head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
        conn.sendall(f"{head}Connection: close\r\n\r\n".encode())

    return behave


@contextlib.contextmanager
def serve(behaviour: Behaviour) -> Iterator[tuple]:
    """A server on a loopback port that answers every connection with ``behaviour``; yields
    (base URL, the requested paths). Connections still open when the block ends are closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # to notice the end of the block
    requests: List[str] = []
    connections: List[socket.socket] = []
    done = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            path = request.split(b" ", 2)[1].decode()
            requests.append(path)
            with contextlib.suppress(OSError):
                behaviour(conn, path)

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            connections.append(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", requests
    finally:
        done.set()
        listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
