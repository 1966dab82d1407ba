"""Operations screens: Emails & webhooks, Settings, and the sign-in page."""
