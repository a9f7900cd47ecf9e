"""The real-time engine: live session state, customer state and the personalisation API."""
