"""PII redaction of file contents (StarCoder2 §3.2): email addresses."""
