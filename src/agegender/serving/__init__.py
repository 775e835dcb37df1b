"""`agegender serve`: an HTTP API and a web page on the CLI's inference path (the `serve` extra).

Import `agegender.serving.app` only where the extra is installed; nothing else imports it.
"""
