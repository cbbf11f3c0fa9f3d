#!/usr/bin/env python3
"""Memory of a gateway holding many idle keep-alive connections.

Opens N connections to the gateway, sends one request on each (so every
connection has been through a whole request and sits idle in keep-alive),
and reads the gateway's resident memory (VmRSS) with all of them open; then
closes them all and reads it again after a pause. HTTP/1.1 over plain TCP
or TLS (`--tls`), or HTTP/2 over TLS (`--h2`: the preface, SETTINGS, one GET, then silence, as an
idle browser tab holds a connection).

Usage: bench/idle_connections.py PID HOST:PORT [N=10000] [--h2 | --tls] [--path /_auth/healthz] [--settle 15]
Prints: baseline, with N idle connections (2 s after the last opened, and
after --settle seconds more, default 15), after they closed (5 s and 15 s
later) in MiB, the cost per connection (KiB), and how many of a sample of the
HTTP/1.1 connections still answer a request after the wait.
"""

import argparse
import asyncio
import resource
import ssl
import struct
import time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_get(authority: str, path: str) -> bytes:
    # HPACK: :method GET (2), :scheme https (7), then :path and :authority as
    # literals without indexing (name index 4 and 1).
    def literal(index: int, value: str) -> bytes:
        v = value.encode()
        return bytes([index]) + bytes([len(v)]) + v

    block = b"\x82\x87" + literal(0x04, path) + literal(0x01, authority)
    return h2_frame(1, 0x05, 1, block)  # HEADERS, END_STREAM | END_HEADERS


async def open_one(host, port, args, ctx, held, errors):
    try:
        if args.h2:
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
            writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"") + h2_get(f"{host}:{port}", args.path))
            await writer.drain()
            # Read until the response's END_STREAM (or enough bytes): the
            # request is done, the connection stays.
            got = b""
            while len(got) < 9 or b"\x01" not in got:
                chunk = await asyncio.wait_for(reader.read(65536), 30)
                if not chunk:
                    raise ConnectionError("closed")
                got += chunk
                if len(got) > 200:
                    break
            # Acknowledge the server's SETTINGS, as a client does.
            writer.write(h2_frame(4, 0x01, 0, b""))
            await writer.drain()
        else:
            if ctx:
                reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
            else:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {args.path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), 30)
        held.append((reader, writer))
    except Exception as e:  # noqa: BLE001 - counted and reported
        errors.append(repr(e))


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("pid", type=int)
    p.add_argument("addr")
    p.add_argument("n", type=int, nargs="?", default=10000)
    p.add_argument("--h2", action="store_true")
    p.add_argument("--tls", action="store_true", help="HTTP/1.1 over TLS (--h2 implies TLS)")
    p.add_argument("--path", default="/_auth/healthz")
    p.add_argument("--settle", type=float, default=15, help="seconds idle before the second reading")
    args = p.parse_args()
    host, port = args.addr.rsplit(":", 1)
    port = int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.n + 1000), hard))
    ctx = None
    if args.h2 or args.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"] if args.h2 else ["http/1.1"])

    base = rss_kib(args.pid)
    held, errors = [], []
    started = time.time()
    batch = 200
    for i in range(0, args.n, batch):
        await asyncio.gather(*(open_one(host, port, args, ctx, held, errors) for _ in range(min(batch, args.n - i))))
    opened = time.time() - started
    await asyncio.sleep(2)
    full = rss_kib(args.pid)
    # Idle connections are what browsers and proxies hold for minutes: read
    # again once they have been quiet a while, then check they still answer.
    await asyncio.sleep(args.settle)
    settled = rss_kib(args.pid)
    checked, answered = await still_answering(host, port, args, held[:: max(1, len(held) // 100)])
    for _, w in held:
        w.close()
    await asyncio.sleep(5)
    after = rss_kib(args.pid)
    await asyncio.sleep(10)
    later = rss_kib(args.pid)
    kind = "HTTP/2 over TLS" if args.h2 else "HTTP/1.1 over TLS" if args.tls else "HTTP/1.1"
    print(f"{kind}: {len(held)} idle connections open ({len(errors)} failed) in {opened:.1f} s")
    if errors:
        print(f"  first error: {errors[0]}")
    print(
        f"  RSS baseline {base / 1024:.1f} MiB; with them, 2 s after the last opened {full / 1024:.1f} MiB, "
        f"after {args.settle:g} s more {settled / 1024:.1f} MiB; "
        f"after closing, 5 s {after / 1024:.1f} MiB, 15 s {later / 1024:.1f} MiB"
    )
    if held:
        print(
            f"  {(full - base) / len(held):.1f} KiB per idle connection at first, "
            f"{(settled - base) / len(held):.1f} KiB after {args.settle:g} s"
        )
    if checked:
        print(f"  still answering after {args.settle:g} s idle: {answered} of {checked} checked")


async def still_answering(host, port, args, sample):
    """Sends one more request on each sampled HTTP/1.1 connection."""
    if args.h2:
        return 0, 0
    answered = 0
    for reader, writer in sample:
        try:
            writer.write(f"GET {args.path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            answered += head.startswith(b"HTTP/1.1 200")
        except Exception:  # noqa: BLE001 - counted as not answering
            pass
    return len(sample), answered


asyncio.run(main())
