"""The store: SQLAlchemy tables, engine set-up, schema migrations and the writer lock.
It knows rows, not audio; tagger.library gives the rows their music meaning."""
