"""Finance screens: Refunds report, Revenue & occupancy, Refund approvals, Disputes, Daily close."""
