"""This project's own implementation of the Contacts API contract."""
