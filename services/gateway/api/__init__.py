"""HTTP API of the gateway: public ViSearch-compatible routes and the admin API."""
