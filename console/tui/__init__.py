"""Textual operator console for the litesrl cluster: fleet, node telemetry, CWB partitions, live DHP training."""
