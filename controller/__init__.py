"""WiFi Kota controller: the core that knows the rules."""
