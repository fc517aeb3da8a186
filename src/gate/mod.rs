//! The gate (DESIGN §5): workload diagnostic, replay simulation of a candidate cluster, and the
//! gate report. Pure functions over request history; the CLI does the file I/O.
