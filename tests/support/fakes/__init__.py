"""Test doubles for the cloud sources: local servers and transports that speak
the real wire formats (ARM JSON, the Retail Prices API, Azure ML run history,
W&B GraphQL), so the real SDKs run against them with no network."""
