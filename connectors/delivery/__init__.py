"""Delivery engine: outbox, dispatcher, partner clients' common types, classification, statistics."""
