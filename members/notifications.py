"""The notification outbox: write a notice, deliver it through a pluggable sender (issue 3)."""
