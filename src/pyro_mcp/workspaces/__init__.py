"""Host-side workspace logic: records, files, patch, diff, snapshots, shells and services."""
