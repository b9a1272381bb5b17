"""Recognising what a user gave: the kind of each file, paste damage, and where it belongs."""
