"""Transparent interception: App Mesh's iptables rules, and the original destination."""
