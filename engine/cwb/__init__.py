"""CWB (computation workload balancing, paper section 3.3.1): the layer profile and the pure partition search."""
