"""Storage handlers: the only code that talks to a store (etcd or SQLite)."""
