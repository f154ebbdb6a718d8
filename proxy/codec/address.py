"""Socket addresses as Envoy prints them, for every codec's stream info and logs."""

from __future__ import annotations


def format_address(address: object) -> str:
    """A socket address as Envoy prints it: ``ip:port`` (``[ip]:port`` for IPv6)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address or "")
