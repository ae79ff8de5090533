"""The embedded fault engine's data path: connections, proxies and live toxics on a loop of
its own with precise timers, and the read-only models it hands out."""
