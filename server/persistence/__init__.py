"""Peewee models, queries and migrations. The only layer that speaks SQL."""
