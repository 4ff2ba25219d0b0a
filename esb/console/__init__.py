"""The web console for failed messages (``esb console``): see ``esb.console.app``."""
