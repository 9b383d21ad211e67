"""Drives Vordr's streaming URLs with the Kubernetes Python client's
WebSocket code (Debian's python3-kubernetes), as a third-party client:

  kubernetes_ws.py exec URL [STDIN]     -> JSON {stdout, stderr, returncode}
  kubernetes_ws.py portforward URL PORT REQUEST -> JSON {data, error}
"""

import json
import socket
import sys

from kubernetes.client import Configuration
from kubernetes.stream.ws_client import (
    PortForward,
    WSClient,
    create_websocket,
    get_websocket_url,
)


def run_exec(url, stdin=None):
    client = WSClient(Configuration(), get_websocket_url(url), None, True)
    if stdin is not None:
        client.write_stdin(stdin)
    client.run_forever(timeout=60)
    out = {
        "stdout": client.read_stdout(timeout=0) or "",
        "stderr": client.read_stderr(timeout=0) or "",
        "returncode": client.returncode,
    }
    return out


def run_portforward(url, port, request):
    ws = create_websocket(
        Configuration(), get_websocket_url(url + "?port=" + str(port))
    )
    pf = PortForward(ws, [port])
    sock = pf.socket(port)
    sock.settimeout(60)
    sock.sendall(request.encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return {"data": data.decode(errors="replace"), "error": pf.error(port)}


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "exec":
        result = run_exec(url, sys.argv[3] if len(sys.argv) > 3 else None)
    elif mode == "portforward":
        result = run_portforward(url, int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit("unknown mode " + mode)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
