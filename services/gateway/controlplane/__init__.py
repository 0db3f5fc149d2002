"""Control-plane use cases: plain async functions over the store, called by routes and CLI."""
