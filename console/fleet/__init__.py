"""The SSH fleet: inventory, verified connections to the Jetson nodes and the actions run on them."""
