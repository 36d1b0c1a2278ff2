"""Node telemetry: typed samples, the tegrastats parser and the sources that stream them (jtop, tegrastats, psutil)."""
