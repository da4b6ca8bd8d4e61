"""Small servers on 127.0.0.1 that speak the wire formats of the services digestbot uses."""
