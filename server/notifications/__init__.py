"""Notifications: e-mail templates and sending, and invoice PDFs."""
