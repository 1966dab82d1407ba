"""Finance screens: Refunds report, Revenue & occupancy, Approvals, Deposits, Disputes, Daily close."""
