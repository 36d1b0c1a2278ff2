"""The emulated cluster: real node-agent processes on loopback, each pretending to be a profiled board."""
