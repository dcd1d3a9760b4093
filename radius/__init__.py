"""The RADIUS server for NAS-mode sites and its Disconnect-Requests (RFC 5176). Calls the
controller's services (``controller.services.nas``), never the store or the firewall."""
