# The rewards mall (catalogue, redemptions, coupons) arrives with its own issue.
