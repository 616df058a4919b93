"""The HTTP service: the talk's endpoint, a JSON API and the web page."""
