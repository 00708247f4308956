"""HL7 v2 adapter: MLLP framing, ER7 reading/writing, order intake."""
