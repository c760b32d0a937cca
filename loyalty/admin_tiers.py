"""Admin for tiers, member tiers, tier changes and benefits (issue 3)."""
