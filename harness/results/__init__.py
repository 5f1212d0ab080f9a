"""Run records and what is made of them: the schema, files, workloads, reading, statistics, report, compare,
plot and publish. Nothing here imports torch."""
