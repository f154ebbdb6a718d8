"""Downstream codecs: the protocols a listener's filter chain speaks (HTTP/1.1, TCP)."""
