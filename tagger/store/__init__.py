"""The store: the only place with SQL. SQLAlchemy tables and migrations (schema), opening a
database and its writer lock (db), where the default database lives (location, without
SQLAlchemy, for ``--help``), the catalogue of tracks, models, scores, embeddings and learned
classifiers (catalog: ``Store``), query objects compiled to SQL (query), the undo journal of
tag writing (journal) and concurrent scanners' claims on files (claims).

It knows rows and vocabularies, not audio, files or models: it runs no network and no
classifier (the scan hands it the learned tags' scores), and imports nothing of the engine."""
