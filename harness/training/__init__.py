"""One run of one recipe on one device, from its RunConfig to its record (``session.Session``)."""
