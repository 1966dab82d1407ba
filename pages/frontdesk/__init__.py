"""Front desk screens: Phone booking, Bookings, Room calendar."""
