"""Finance: refund reports, revenue and occupancy, refund approvals, disputes and the daily close."""
