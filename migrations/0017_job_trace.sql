-- pgvault state database, version 17: each job's W3C trace context (the
-- `traceparent` of the span that created it), so every attempt's dispatch,
-- claim and engine spans continue one trace across processes and retries,
-- and `pgvault job show` prints the trace id. NULL for jobs created before.
ALTER TABLE jobs ADD COLUMN trace_context text;
