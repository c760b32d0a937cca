# The rewards mall (catalogue, redemptions, coupons) registers its admin with its own issue.
