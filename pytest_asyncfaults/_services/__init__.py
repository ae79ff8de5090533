"""Real services behind the proxies: a throwaway PostgreSQL cluster (or the user's server)
and an SMTP server, shared by a run."""
