"""Pure business rules: no database, no gateways, no clock of their own (they take `now`)."""
