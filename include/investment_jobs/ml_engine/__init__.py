"""The ML engine: the package's HTTP client (on HttpHook) and the validation of the items it sends."""
