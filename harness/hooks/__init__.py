"""The plugin system: the hooks (``specs``), loading plugins (``manager``), what they register (``components``,
``registry``, ``commands``) and what observers are told (``events``)."""
