"""The scan engine: audio files in, one result per track out, as a stream.

    plan        plan.py       walk the folders, compare with what is stored → files to score
    decode      decode.py     worker processes stream each file's chunks (or its failure) as
                              typed events (events.py)
    batch       batch.py      chunks packed across tracks into fixed-size batches; each row
                              knows its track
    run         runner.py     the model on the device (async copies on CUDA)
    aggregate   aggregate.py  a track's mean probabilities and embedding once its last chunk
                              has come back (results.py: the TrackResult)
    stream      engine.py     ``score_files`` ties them together and yields TrackResults

``ray_engine.py`` runs the same stages as a Ray Data pipeline (``ScanOptions.scan_engine``
chooses which scan engine runs: "local" or "ray"), and ``inference.py`` tags one file in
process with the same decode and run stages (``tagger tag``, ``similar`` on a new file).

The engine knows nothing of the database or of tag writing: ``tagger.scan`` stores the stream,
and the command line adds tag writing as a second consumer. Importing this package (or
``options``/``results``/``plan``/``events``) does not import torch.
"""
