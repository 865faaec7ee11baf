"""The core of the CardDAV gateway: client, mapping, identities, access policy."""
