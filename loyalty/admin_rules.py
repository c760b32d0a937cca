"""Admin for earning rules and campaigns (issue 3)."""
