"""The scan engine: audio files in, one result per track out, as a stream.

    plan        plan.py       walk the folders, compare with what is stored → files to score
    decode      decode.py     worker processes stream each file's chunks (or its failure)
    batch       batch.py      chunks packed across tracks into fixed-size batches; each row
                              knows its track
    run         ../runner.py  the model on the device (async copies on CUDA)
    aggregate   aggregate.py  a track's mean probabilities and embedding once its last chunk
                              has come back
    stream      engine.py     ``score_files`` ties them together and yields TrackResults

The engine knows nothing of the database or of tag writing: ``tagger.scan`` stores the stream,
and the command line adds tag writing as a second consumer. Importing this package (or
``options``/``results``/``plan``) does not import torch.
"""
