"""The domain: plain Python entities, value rules, statuses and errors. Imports no framework."""
