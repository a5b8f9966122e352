"""The networks and their files: the log-mel front-end, the architectures (cnn, musicnn), what
every model provides (tagmodel), model files and their cards (modelfile, modelcard), tag names
and synonym groups (vocab), the musicnn converter (convert/), and the built-in weights
(builtin/).

modelcard, frontendconfig and vocab are torch-free: the command line and the store read
cards and vocabularies without loading a network."""
