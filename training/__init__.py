"""The training module (`tagger train`, `tagger evaluate`): the founding report's recipe.

Not built yet; see the project's issues. The models it trains are tagger.cnn.ShortChunkCNN
configs (report_config(), baseline_config()) saved with tagger.modelfile.save_model().
"""
