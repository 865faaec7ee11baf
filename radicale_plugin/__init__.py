"""Radicale plugins that adapt the gateway core to CardDAV."""
