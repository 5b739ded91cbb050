"""The ML engine: the package's HTTP client (on HttpHook) and a stand-in server for tests and the demo."""
