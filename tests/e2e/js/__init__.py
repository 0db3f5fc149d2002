"""Node scripts and the shared test shop of the JavaScript SDK and widget tests."""
