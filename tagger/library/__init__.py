"""What a scanned library is for: queries (query), similar tracks and radio walks (similar),
tags learned from examples (learned, examples), and writing the predicted tags into the files
(writer). Each feature reads and writes the database through the store (tagger.store)."""
