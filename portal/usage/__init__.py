"""Usage metering: ingestion, meters, usage per period, entitlements and quota notices."""
