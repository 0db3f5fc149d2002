"""The control-plane store: accounts, members, applications, keys, schemas (SQLAlchemy)."""
