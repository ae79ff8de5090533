"""Where proxies live: one small interface (``_base``), one module per backend (the embedded
engine, a Toxiproxy HTTP API, ``asyncfaults serve`` as a child process)."""
